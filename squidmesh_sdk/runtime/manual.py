"""Resuming a paused run: ``unblock_run`` (pause steps), ``approve_run`` / ``reject_run``.

A run is pinned to its definition version, so the routes it resumes along are those it paused
with. Completing the waiting step, recording the decision, moving the run and dispatching the
next step commit together: if the executor refuses the next step, nothing changes and
:class:`~squidmesh_sdk.errors.DispatchFailed` is raised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from squidmesh_sdk import error_records, errors, strict_json, telemetry
from squidmesh_sdk.graph import StepKey, StepNode
from squidmesh_sdk.runtime import inputs, progression
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import StepCompleted
from squidmesh_sdk.runtime.routes import choose_route
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import audit, run_reads, step_run_reads
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run, StepRun

__all__ = ["Decision", "resume_run", "validate_cancellation"]

Decision = Literal["resumed", "approved", "rejected"]
"""The manual action: ``resumed`` unblocks a pause step; the others decide an approval."""

Actor = str | Mapping[str, Any]


def resume_run(
    runtime: Runtime,
    run_id: str,
    decision: Decision,
    *,
    actor: Actor | None = None,
    comment: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    step: str | None = None,
) -> Run:
    """Resume a pause step (``resumed``) or decide an approval step of a run.

    The step is the one the run waits at; ``step`` names it when several wait at once (a step
    name, or a step run key such as ``"review@2"``). An approval's ``approved`` takes its
    ``ok`` route, ``rejected`` its ``error`` route (a run without one fails, with
    ``approval_rejected``). Other branches of the run may keep running meanwhile.

    Raises:
        InvalidResume: malformed actor, comment or metadata (an approval decision needs an
            actor).
        InvalidRunId, RunNotFound: no such run.
        InvalidTransition: the run is finished, cancelling, or waits at no pause or approval.
        InvalidStep: the step waiting is of the other kind, ``step`` names no waiting step, or
            several wait and ``step`` was not given.
        DispatchFailed: the executor refused the next step; nothing changed.
    """
    details = _validate(decision, actor, comment, metadata)
    runtime.check_schema()
    with runtime.database.read() as connection:
        paused = run_reads.get_run(connection, run_id)
    verb = {"resumed": "unblock", "approved": "approve", "rejected": "reject"}[decision]
    with (
        telemetry.action(verb, paused.workflow, paused.id, paused.trace_context),
        runtime.transaction() as tx,
    ):
        run = run_store.lock_run(tx.connection, run_id)
        if run.status not in ("paused", "running", "retrying"):
            raise errors.InvalidTransition(run.status, "running", run_id=run.id)
        step_run = _waiting_step_run(tx, run, decision, step)
        definition = runtime.definition_of(run)
        node = definition.steps.get(StepKey.parse(step_run.step).name)
        if node is None or not node.is_manual:
            raise errors.InvalidStep(
                run.id, step_run.step, "the waiting step is no longer a pause or approval"
            )
        attempt = attempt_store.latest_attempt(tx.connection, step_run.id)
        if attempt is None or attempt.status != "running":
            raise errors.InvalidStep(run.id, step_run.step, "the paused step has no open attempt")
        attempt_store.complete_attempt(tx, attempt)
        output = _output(step_run, node, decision, details, tx)
        manual = {"event": decision, "at": tx.now.isoformat(), **details}
        step_run_store.complete_manual_step(tx, step_run.id, output, manual)
        audit.record_event(
            tx,
            run.id,
            decision,
            step=step_run.step,
            actor=details.get("actor"),
            comment=details.get("comment"),
            metadata=details.get("metadata"),
        )
        duration = tx.now - attempt.inserted_at
        tx.events.append(StepCompleted(run, step_run.step, attempt.number, duration))
        if decision != "rejected":
            return progression.advance_after_success(
                runtime, tx, run, definition, node, output, key=step_run.step, strict=True
            )
        context = inputs.merge_output(run.context, output)
        choice = choose_route(definition, node.name, "error")
        if choice.edge is None:
            error = error_records.error_record(
                "rejected",
                f"approval {node.name!r} was rejected",
                code="approval_rejected",
                step=node.name,
                details={k: v for k, v in details.items() if k in ("actor", "comment")},
            )
            run = progression.write_run(tx, run, context=context)
            return progression.fail_run(runtime, tx, run, error, current_step=step_run.step)
        return progression.follow(
            runtime, tx, run, definition, choice, key=step_run.step, context=context, strict=True
        )


def _validate(
    decision: Decision,
    actor: Actor | None,
    comment: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    problems: dict[str, str] = {}
    details: dict[str, Any] = {}
    if actor is None:
        if decision != "resumed":
            problems["actor"] = "required: say who approved or rejected"
    else:
        details["actor"] = _checked_actor(actor, problems)
    if comment is not None:
        details["comment"] = _checked_text(comment, "comment", problems)
    if metadata is not None:
        if isinstance(metadata, Mapping):
            details["metadata"] = _json_safe(dict(metadata), "metadata", problems)
        else:
            problems["metadata"] = "must be a mapping"
    if problems:
        raise errors.InvalidResume(problems)
    return details


def validate_cancellation(actor: Actor | None, reason: str | None) -> dict[str, Any]:
    """Check the optional actor and reason of a cancellation as a manual decision's.

    Returns:
        ``{"actor": ..., "reason": ...}`` with the given ones only.

    Raises:
        InvalidResume: the actor is not a non-empty string or mapping of strict JSON values, or
            the reason is not non-empty text that can be stored.
    """
    problems: dict[str, str] = {}
    details: dict[str, Any] = {}
    if actor is not None:
        details["actor"] = _checked_actor(actor, problems)
    if reason is not None:
        details["reason"] = _checked_text(reason, "reason", problems)
    if problems:
        raise errors.InvalidResume(problems)
    return details


def _checked_actor(actor: object, problems: dict[str, str]) -> Actor:
    if isinstance(actor, str) and actor.strip():
        return _strict_text(actor, "actor", problems)
    if isinstance(actor, Mapping) and actor:
        return _json_safe(dict(actor), "actor", problems)
    problems["actor"] = "must be a non-empty string or a non-empty mapping"
    return str(actor)


def _checked_text(value: object, field: str, problems: dict[str, str]) -> str:
    if isinstance(value, str) and value.strip():
        return _strict_text(value, field, problems)
    problems[field] = "must be a non-empty string"
    return str(value)


def _json_safe(value: dict[str, Any], field: str, problems: dict[str, str]) -> dict[str, Any]:
    problem = strict_json.find_problem(value, root=field)
    if problem is not None:
        problems[field] = f"must hold strict JSON values only ({problem.path}: {problem.reason})"
        return value
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems[field] = f"must hold JSON values only ({exc})"
    return value


def _strict_text(value: str, field: str, problems: dict[str, str]) -> str:
    problem = strict_json.find_problem(value, root=field)
    if problem is not None:
        problems[field] = f"must be text that can be stored: it {problem.reason}"
    return value


def _waiting_step_run(tx: Transaction, run: Run, decision: Decision, step: str | None) -> StepRun:
    """The pause or approval step run the decision is for."""
    waiting = [
        state.key
        for state in step_run_reads.progress_states(tx.connection, run.id)
        if state.waiting
    ]
    manual: list[StepRun] = []
    for key in waiting:
        found = step_run_reads.get_step_run(tx.connection, run.id, key)
        if found is not None and (found.resume or {}).get("kind") in ("pause", "approval"):
            manual.append(found)
    if step is not None:
        named = [s for s in manual if step in (s.step, StepKey.parse(s.step).name)]
        if not named:
            raise errors.InvalidStep(run.id, step, "no pause or approval waits at this step")
        chosen = named[-1]
    elif not manual:
        if run.status != "paused":
            raise errors.InvalidTransition(run.status, "running", run_id=run.id)
        raise errors.InvalidStep(run.id, run.current_step, "the paused step is not running")
    elif len(manual) > 1:
        names = ", ".join(s.step for s in manual)
        raise errors.InvalidStep(
            run.id, None, f"several steps wait ({names}): name one with step= (CLI: --step)"
        )
    else:
        chosen = manual[0]
    kind = (chosen.resume or {}).get("kind")
    if decision == "resumed" and kind != "pause":
        raise errors.InvalidStep(
            run.id,
            chosen.step,
            "this step waits for an approval, not an unblock: "
            f"squidmesh runs approve {run.id} --actor NAME (or runs reject)",
        )
    if decision != "resumed" and kind != "approval":
        raise errors.InvalidStep(
            run.id,
            chosen.step,
            f"this step is a pause, not an approval: squidmesh runs unblock {run.id} resumes it",
        )
    return chosen


def _output(
    step_run: StepRun,
    node: StepNode,
    decision: Decision,
    details: Mapping[str, Any],
    tx: Transaction,
) -> dict[str, Any]:
    if decision == "resumed":
        return inputs.namespaced(node, {})
    record = {"decision": decision, "decided_at": tx.now.isoformat(), **details}
    key = (step_run.resume or {}).get("output_key", node.output_key)
    return {key: record} if isinstance(key, str) and key else record
