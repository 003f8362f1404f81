"""The step-run store: one row per run and step, guarded against stale and duplicate deliveries.

Finishing writes (:func:`complete_step`, :func:`complete_manual_step`, :func:`fail_step`) only
touch a ``running`` row; anything else raises :class:`~squidmesh_sdk.errors.StaleRecord`, so a
delivery that lost a race cannot overwrite the winner's result. Starting a step run (with its
attempt) is :mod:`squidmesh_sdk.store.step_starts`; the reads are
:mod:`squidmesh_sdk.store.step_run_reads`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk import errors
from squidmesh_sdk.graph import StepKey
from squidmesh_sdk.store.database import Transaction, upsert
from squidmesh_sdk.store.ids import as_uuid, new_id
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import StepRun
from squidmesh_sdk.store.schema import step_runs
from squidmesh_sdk.store.step_run_reads import get_step_run

__all__ = [
    "ScheduledStep",
    "close_pending",
    "complete_manual_step",
    "complete_step",
    "delete_pending_steps",
    "fail_step",
    "new_row_values",
    "persist_approval_resume",
    "persist_pause_resume",
    "persist_waiting",
    "record_failure_recovery",
    "reopen_closed",
    "schedule_step",
    "schedule_steps",
    "skip_steps",
    "update_recovery",
]

ScheduledStep = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]
"""``(step, input)`` or ``(step, input, recovery)``."""


def schedule_step(
    tx: Transaction,
    run_id: str | uuid.UUID,
    step: str,
    input: Mapping[str, Any],
    recovery: Mapping[str, Any] | None = None,
) -> tuple[StepRun, Literal["schedule", "skip"]]:
    """Record ``step`` as scheduled (``pending``) with its input snapshot.

    Returns the existing row with ``"skip"`` when the step was already scheduled or ran.
    """
    inserted = schedule_steps(tx, run_id, [(step, input, recovery or {})])
    existing = get_step_run(tx.connection, run_id, step)
    assert existing is not None  # noqa: S101 - inserted or already present
    return existing, ("schedule" if inserted else "skip")


def schedule_steps(
    tx: Transaction, run_id: str | uuid.UUID, items: Iterable[ScheduledStep]
) -> list[str]:
    """Insert ``pending`` rows for several steps at once; return the steps newly inserted.

    Steps that already have a row are left alone, so scheduling the same fan-out twice inserts
    nothing the second time. A step listed twice is scheduled once, with its first input.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        step, step_input = item[0], item[1]
        if step in seen:  # one row per step: the first entry wins
            continue
        seen.add(step)
        recovery = item[2] if len(item) == 3 else None
        rows.append(
            {
                "id": new_id(),
                "run_id": as_uuid(run_id),
                "step": step,
                "status": "pending",
                "input": dict(step_input),
                "recovery": dict(recovery) if recovery else None,
                "inserted_at": tx.now,
                "updated_at": tx.now,
            }
        )
    return _insert_new(tx, rows)


def skip_steps(tx: Transaction, run_id: str | uuid.UUID, steps: Sequence[str]) -> list[str]:
    """Record ``steps`` as ``skipped`` (a branch not taken); return those newly recorded.

    A step that already has a row keeps it.
    """
    if not steps:
        return []
    rows = [
        {
            "id": new_id(),
            "run_id": as_uuid(run_id),
            "step": step,
            "status": "skipped",
            "input": {},
            "inserted_at": tx.now,
            "updated_at": tx.now,
        }
        for step in dict.fromkeys(steps)
    ]
    return _insert_new(tx, rows)


def _insert_new(tx: Transaction, rows: list[dict[str, Any]]) -> list[str]:
    """Insert the step runs whose (run, step) has no row yet; return the steps inserted.

    One prepared statement per row (a fan-out's rows differ in number, and a multi-row
    ``INSERT`` built each time cost more than the database's work): on PostgreSQL they all
    travel in one round trip.
    """
    connection = tx.connection
    pending = [
        _INSERT_NEW.rows_later(
            connection,
            {
                "p_id": row["id"],
                "p_run_id": row["run_id"],
                "p_step": row["step"],
                "p_status": row["status"],
                "p_input": row["input"],
                "p_recovery": row.get("recovery"),
                "p_now": row["inserted_at"],
            },
        )
        for row in rows
    ]
    return [str(row["step"]) for row, fetch in zip(rows, pending, strict=True) if fetch()]


def close_pending(
    tx: Transaction,
    run_id: str | uuid.UUID,
    status: Literal["cancelled", "skipped"],
    error: Mapping[str, Any],
) -> list[str]:
    """Close the run's ``pending`` step runs (its run finished first); return their keys.

    ``error`` (its ``code`` names what closed them) is kept as their ``last_error``, so an
    element that never ran says why; :func:`reopen_closed` finds them by it.
    """
    rows = tx.connection.execute(
        step_runs.update()
        .where(step_runs.c.run_id == as_uuid(run_id), step_runs.c.status == "pending")
        .values(status=status, last_error=dict(error), updated_at=tx.now)
        .returning(step_runs.c.step)
    )
    return sorted(rows.scalars(), key=_key_order)


def reopen_closed(tx: Transaction, run_id: str | uuid.UUID, code: str) -> list[str]:
    """Put back to ``pending`` the step runs :func:`close_pending` closed with ``code``.

    ``retry_run`` resumes a failed run with the steps its failure closed, as they were.
    """
    rows = tx.connection.execute(
        sa.select(step_runs.c.id, step_runs.c.step, step_runs.c.last_error).where(
            step_runs.c.run_id == as_uuid(run_id), step_runs.c.status == "skipped"
        )
    ).all()
    closed = [row for row in rows if (row.last_error or {}).get("code") == code]
    if not closed:
        return []
    tx.connection.execute(
        step_runs.update()
        .where(step_runs.c.id.in_([row.id for row in closed]))
        .values(status="pending", last_error=None, updated_at=tx.now)
    )
    return sorted((str(row.step) for row in closed), key=_key_order)


def _key_order(key: str) -> tuple[str, int, int]:
    """Step keys in a readable order: by name, iteration, then element index (not as text)."""
    parsed = StepKey.parse(key)
    return (parsed.name, parsed.iteration, -1 if parsed.item is None else parsed.item)


def persist_waiting(
    tx: Transaction, step_run_id: str | uuid.UUID, resume: Mapping[str, Any]
) -> StepRun:
    """Mark a running step run as waiting: ``resume`` says for what (``kind``) and until when.

    Raises:
        StaleRecord: the step run is not running.
    """
    return _update_running(tx, step_run_id, resume=dict(resume))


def delete_pending_steps(tx: Transaction, run_id: str | uuid.UUID, steps: Sequence[str]) -> int:
    """Delete the given steps' rows that are still ``pending``; return how many were deleted."""
    result = tx.connection.execute(
        step_runs.delete().where(
            step_runs.c.run_id == as_uuid(run_id),
            step_runs.c.step.in_(list(steps)),
            step_runs.c.status == "pending",
        )
    )
    return result.rowcount


def complete_step(
    tx: Transaction, step_run_id: str | uuid.UUID, output: Mapping[str, Any]
) -> StepRun:
    """Mark a running step run completed with ``output``.

    Raises:
        StaleRecord: the step run is not running.
    """
    return _finish(
        tx, step_run_id, status="completed", output=dict(output), last_error=None, manual=None
    )


def complete_manual_step(
    tx: Transaction,
    step_run_id: str | uuid.UUID,
    output: Mapping[str, Any],
    manual: Mapping[str, Any],
) -> StepRun:
    """Complete a paused manual step, recording who resumed it and how (``manual``).

    Raises:
        StaleRecord: the step run is not running.
    """
    return _finish(
        tx,
        step_run_id,
        status="completed",
        output=dict(output),
        last_error=None,
        manual=dict(manual),
    )


def fail_step(tx: Transaction, step_run_id: str | uuid.UUID, error: Mapping[str, Any]) -> StepRun:
    """Mark a running step run failed with ``error``.

    Raises:
        StaleRecord: the step run is not running.
    """
    return _finish(
        tx, step_run_id, status="failed", output=None, last_error=dict(error), manual=None
    )


def persist_pause_resume(
    tx: Transaction, step_run_id: str | uuid.UUID, output: Mapping[str, Any], target: str
) -> StepRun:
    """Store where a running pause step resumes to, and the output it will complete with.

    Raises:
        StaleRecord: the step run is not running.
    """
    resume = {"kind": "pause", "output": dict(output), "target": target}
    return _update_running(tx, step_run_id, resume=resume)


def persist_approval_resume(
    tx: Transaction,
    step_run_id: str | uuid.UUID,
    *,
    ok_target: str,
    error_target: str,
    output_key: str | None,
) -> StepRun:
    """Store the routes of a running approval step and the key its decision is stored under.

    Raises:
        StaleRecord: the step run is not running.
    """
    resume = {
        "kind": "approval",
        "ok_target": ok_target,
        "error_target": error_target,
        "output_key": output_key,
    }
    return _update_running(tx, step_run_id, resume=resume)


def record_failure_recovery(
    tx: Transaction, step_run_id: str | uuid.UUID, *, strategy: str, target: str
) -> StepRun:
    """Note on a failed step run that its error route (``strategy``) led to ``target``.

    Raises:
        StaleRecord: the step run is not failed.
    """
    row = _get(tx.connection, step_run_id)
    if row is None or row.status != "failed":
        raise errors.StaleRecord("step_run", str(step_run_id), row.status if row else None)
    recovery = {**(row.recovery or {}), "failure": {"strategy": strategy, "target": target}}
    return update_recovery(tx, step_run_id, recovery)


def update_recovery(
    tx: Transaction, step_run_id: str | uuid.UUID, recovery: Mapping[str, Any]
) -> StepRun:
    """Overwrite the recovery metadata whatever the step run's status.

    Raises:
        StaleRecord: the step run does not exist.
    """
    row = (
        tx.connection.execute(
            step_runs.update()
            .where(step_runs.c.id == as_uuid(step_run_id))
            .values(recovery=dict(recovery), updated_at=tx.now)
            .returning(*step_runs.c)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise errors.StaleRecord("step_run", str(step_run_id), None)
    return StepRun.from_row(row)


def _get(connection: Connection, step_run_id: str | uuid.UUID) -> StepRun | None:
    row = (
        connection.execute(sa.select(step_runs).where(step_runs.c.id == as_uuid(step_run_id)))
        .mappings()
        .first()
    )
    return StepRun.from_row(row) if row else None


def _finish(tx: Transaction, step_run_id: str | uuid.UUID, **values: Any) -> StepRun:
    return _update_running(tx, step_run_id, resume=None, **values)


def _update_running(tx: Transaction, step_run_id: str | uuid.UUID, **values: Any) -> StepRun:
    row: Mapping[Any, Any] | None
    if values.keys() == _FINISH_FIELDS:
        row = _FINISH_STEP.first(
            tx.connection,
            {
                "p_id": step_run_id,
                "p_now": tx.now,
                **_prefixed(values),
            },
        )
    else:
        row = (
            tx.connection.execute(
                step_runs.update()
                .where(step_runs.c.id == as_uuid(step_run_id), step_runs.c.status == "running")
                .values(updated_at=tx.now, **values)
                .returning(*step_runs.c)
            )
            .mappings()
            .first()
        )
    if row is None:
        current = _get(tx.connection, step_run_id)
        raise errors.StaleRecord("step_run", str(step_run_id), current.status if current else None)
    return StepRun.from_row(row)


_FINISH_FIELDS = {"status", "output", "last_error", "manual", "resume"}


def _prefixed(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"p_{key}": value for key, value in values.items()}


def new_row_values(*, status: object) -> dict[str, Any]:
    """A step run row's values as bind parameters (``p_id``, ``p_run_id``...), with ``status``."""
    return {
        "id": sa.bindparam("p_id"),
        "run_id": sa.bindparam("p_run_id"),
        "step": sa.bindparam("p_step"),
        "status": status,
        "input": sa.bindparam("p_input"),
        "recovery": sa.bindparam("p_recovery"),
        "inserted_at": sa.bindparam("p_now"),
        "updated_at": sa.bindparam("p_now"),
    }


_INSERT_NEW = Prepared(
    lambda dialect: (
        upsert(dialect, step_runs)
        .values(new_row_values(status=sa.bindparam("p_status")))
        .on_conflict_do_nothing(index_elements=[step_runs.c.run_id, step_runs.c.step])
        .returning(step_runs.c.step)
    )
)


def _finish_step_statement(_dialect: str) -> Any:
    return (
        step_runs.update()
        .where(step_runs.c.id == sa.bindparam("p_id"), step_runs.c.status == "running")
        .values(
            status=sa.bindparam("p_status"),
            output=sa.bindparam("p_output"),
            last_error=sa.bindparam("p_last_error"),
            manual=sa.bindparam("p_manual"),
            resume=sa.bindparam("p_resume"),
            updated_at=sa.bindparam("p_now"),
        )
    )


_FINISH_STEP = Prepared(lambda dialect: _finish_step_statement(dialect).returning(*step_runs.c))
