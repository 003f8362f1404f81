"""How the CLI prints: stable JSON, plain tables, and the JSON form of run records.

JSON output has sorted keys, two-space indentation and ISO-8601 times in UTC, so the same state
always prints the same text. Records become objects with one key per attribute (see
``docs/cli.md``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from squidmesh_sdk.runtime.explanation import RunExplanation
from squidmesh_sdk.runtime.retention import PurgeResult
from squidmesh_sdk.state_machine import TERMINAL
from squidmesh_sdk.store.records import AuditEvent, Run

__all__ = [
    "compact",
    "duration",
    "error_text",
    "explanation_text",
    "fields_text",
    "human_time",
    "purge_text",
    "run_dict",
    "run_duration",
    "run_text",
    "table",
    "to_json",
]

_HISTORY = ("step_runs", "events", "steps", "signals", "children")


def to_json(value: Any) -> str:
    """``value`` as indented JSON with sorted keys and ISO-8601 times, newline-terminated."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=_default) + "\n"


def compact(value: Any) -> str:
    """``value`` as one-line JSON with sorted keys, for human output."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=_default)


def human_time(value: datetime | None) -> str:
    """A time for tables: ISO-8601 in UTC to the second, or ``-``."""
    if value is None:
        return "-"
    return _utc(value).isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """A length of time for tables: ``850ms``, ``4.2s``, ``3m05s``, ``2h07m``, ``3d04h``, ``-``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def run_duration(run: Run, now: datetime) -> float:
    """Seconds from a run's start to its end, or to ``now`` while it is not finished."""
    end = run.updated_at if run.status in TERMINAL else now
    return max((end - run.inserted_at).total_seconds(), 0.0)


def run_dict(run: Run, *, history: bool = False) -> dict[str, Any]:
    """A run as a JSON-safe dict; with ``history``, also ``step_runs``, ``events``, ``steps``.

    ``steps`` is ``null`` when the app does not know the run's workflow any more.
    """
    data = {
        field.name: _plain(getattr(run, field.name))
        for field in dataclasses.fields(run)
        if field.name not in _HISTORY
    }
    if history:
        data["step_runs"] = _plain(run.step_runs or ())
        data["events"] = _plain(run.events or ())
        data["steps"] = _plain(run.steps) if run.steps is not None else None
        data["signals"] = _plain(run.signals or ())
        data["children"] = _plain(run.children or ())
    return data


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; ``None`` prints as ``-``."""
    cells = [list(headers), *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines) + "\n"


def explanation_text(run_id: str, explanation: RunExplanation) -> str:
    """An explanation for people; next actions are spelled as ``squidmesh`` commands."""
    actions = [
        _action_command(action, run_id, explanation.details) for action in explanation.next_actions
    ]
    return fields_text(
        [
            ("run", run_id),
            ("status", explanation.status),
            ("reason", explanation.reason),
            ("step", explanation.step or "-"),
            ("details", compact(explanation.details) if explanation.details else "-"),
            ("next", actions[0] if actions else "-"),
            *(("", action) for action in actions[1:]),
        ]
    )


def purge_text(result: PurgeResult) -> str:
    """What a purge deleted (or, dry, would delete): a summary, rows per table, the run ids."""
    which = "/".join(result.statuses)
    if result.workflow is not None:
        which += f" {result.workflow}"
    before = human_time(result.cutoff)
    if result.dry_run:
        head = (
            f"dry run: {_runs(result.runs)} ({which}) last changed before {before} would be "
            "deleted; nothing was deleted"
        )
    else:
        batches = "batch" if result.batches == 1 else "batches"
        head = (
            f"purged {_runs(result.runs)} ({which}) last changed before {before} "
            f"in {result.batches} {batches}"
        )
    lines = [head]
    if result.kept_compensating:
        lines.append(
            f"kept {_runs(result.kept_compensating)} whose saga compensation has not finished"
        )
    sections = ["\n".join(lines) + "\n", table(("TABLE", "ROWS"), result.rows.items())]
    if result.run_ids:
        sections.append(table(("RUN_ID",), ((run_id,) for run_id in result.run_ids)))
        if len(result.run_ids) < result.runs:
            sections.append(f"(the first {len(result.run_ids)} of {result.runs} runs)\n")
    return "\n".join(sections)


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


_ACTION_COMMANDS: Mapping[str, str] = {
    "approve_run": "squidmesh runs approve {run_id} --actor NAME",
    "reject_run": "squidmesh runs reject {run_id} --actor NAME",
    "unblock_run": "squidmesh runs unblock {run_id}",
    "cancel_run": "squidmesh runs cancel {run_id}",
    "replay_run": "squidmesh runs replay {run_id}",
    "retry_run": "squidmesh runs retry {run_id}",
    "signal_run": "squidmesh runs signal {run_id} SIGNAL --json-payload JSON",
    "deploy_version": "deploy the workflow version the run is pinned to beside the current one",
    "retry_job": "squidmesh jobs retry {job_id}",
}


def _action_command(action: str, run_id: str, details: Mapping[str, Any]) -> str:
    template = _ACTION_COMMANDS.get(action)
    if template is None:
        return action.replace("_", " ")
    # A dead letter's id is in the details, or in those of the job beside a failed run.
    dead = details.get("dead_lettered_job")
    job_id = (dead if isinstance(dead, Mapping) else details).get("job_id", "JOB_ID")
    return template.format(run_id=run_id, job_id=job_id)


def fields_text(pairs: list[tuple[str, str]]) -> str:
    """Labelled lines, the values aligned in one column."""
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in pairs) + "\n"


def run_text(run: Run) -> str:
    """A run with history for people: its fields, then tables of steps, attempts, events."""
    pairs = [
        ("run", run.id),
        ("workflow", run.workflow),
        ("version", run.definition_version or "-"),
        ("trigger", run.trigger),
        ("status", run.status),
        ("current step", run.current_step or "-"),
    ]
    if run.replayed_from_run_id:
        pairs.append(("replay of", run.replayed_from_run_id))
    if run.idempotency_key is not None:
        pairs.append(("idempotency key", run.idempotency_key))
    if run.parent_run_id:
        pairs.append(("parent run", f"{run.parent_run_id} (step {run.parent_step})"))
    pairs += [
        ("inserted at", human_time(run.inserted_at)),
        ("updated at", human_time(run.updated_at)),
        ("payload", compact(run.payload)),
        ("context", compact(run.context)),
    ]
    if run.last_error:
        pairs.append(("last error", error_text(run.last_error) or "-"))
    sections = [fields_text(pairs)]

    if run.steps is not None:
        steps: list[tuple[object, ...]] = [
            (state.step, state.status, len(state.attempts), state.updated_at) for state in run.steps
        ]
    else:
        steps = [
            (sr.step, sr.status, len(sr.attempts or ()), sr.updated_at)
            for sr in run.step_runs or ()
        ]
    if steps:
        sections.append(table(("STEP", "STATUS", "ATTEMPTS", "UPDATED_AT"), steps))

    attempts = [
        (sr.step, attempt.number, attempt.status, attempt.inserted_at, error_text(attempt.error))
        for sr in run.step_runs or ()
        for attempt in sr.attempts or ()
    ]
    if attempts:
        sections.append(table(("STEP", "ATTEMPT", "STATUS", "STARTED_AT", "ERROR"), attempts))

    compensations = _compensations(run)
    if compensations:
        sections.append(
            table(
                ("COMPENSATION", "OF_STEP", "STATUS", "ATTEMPT", "FINISHED_AT", "RESULT"),
                compensations,
            )
        )

    signals = [
        (signal.inserted_at, signal.name, signal.status, signal.step, signal.idempotency_key)
        for signal in run.signals or ()
    ]
    if signals:
        sections.append(table(("RECEIVED_AT", "SIGNAL", "STATUS", "STEP", "KEY"), signals))
    children = [
        (child.child_run_id, child.workflow, child.status, child.parent_step)
        for child in run.children or ()
    ]
    if children:
        sections.append(table(("CHILD_RUN", "WORKFLOW", "STATUS", "STEP"), children))

    events = [
        (event.at, event.type, event.step, _actor(event.actor), event.comment or _note(event))
        for event in run.events or ()
    ]
    if events:
        sections.append(table(("AT", "EVENT", "STEP", "ACTOR", "COMMENT"), events))
    return "\n".join(sections)


def _note(event: AuditEvent) -> str | None:
    """What a run's end closed, for the events the runtime records without a comment."""
    metadata = event.metadata or {}
    if event.type == "steps_closed":
        return f"{metadata.get('status')}, not run: {', '.join(metadata.get('steps') or ())}"
    if event.type == "child_cancelled":
        return f"child run {metadata.get('child_run_id')} {metadata.get('child_status')}"
    if event.type == "child_abandoned":
        return f"child run {metadata.get('child_run_id')} left running (on_parent_close)"
    return None


def error_text(error: Mapping[str, Any] | None) -> str | None:
    """An error mapping's message on one line (``None`` when there is no error)."""
    if not error:
        return None
    message = error.get("message")
    return " ".join(str(message).split()) if message else compact(error)


def _compensations(run: Run) -> list[tuple[object, ...]]:
    """One row per saga callback recorded under ``recovery["compensation"]``, in run order.

    Callbacks run newest completion first, so rows are sorted by when each one started.
    """
    rows: list[tuple[str, tuple[object, ...]]] = []
    for step_run in run.step_runs or ():
        state = (step_run.recovery or {}).get("compensation")
        if not isinstance(state, Mapping):
            continue
        status = state.get("status")
        finished = state.get("completed_at") or state.get("failed_at")
        if status == "failed":
            result = error_text(state.get("error")) or "failed"
        elif status == "completed":
            output = state.get("output")
            result = compact(output) if output else "-"
        else:
            result = "-"
        callback = str(state.get("callback") or "-").rsplit(".", 1)[-1]
        started = str(state.get("started_at") or "")
        rows.append(
            (
                started,
                (
                    callback,
                    step_run.step,
                    status or "-",
                    state.get("attempt"),
                    _iso_seconds(finished),
                    result,
                ),
            )
        )
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


def _iso_seconds(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return human_time(datetime.fromisoformat(value))
    except ValueError:
        return value


def _actor(actor: str | Mapping[str, Any] | None) -> str | None:
    if actor is None or isinstance(actor, str):
        return actor
    return compact(actor)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return human_time(value)
    return " ".join(str(value).split())


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
