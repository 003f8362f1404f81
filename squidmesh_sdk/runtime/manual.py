"""Resuming a paused run: ``unblock_run`` (pause steps), ``approve_run`` / ``reject_run``.

The resume target and output key were persisted when the run paused, so a definition deployed
while it waited does not change where it resumes to. Completing the paused step, recording the
decision, moving the run and dispatching the next step commit together: if the executor refuses
the next step, nothing changes and :class:`~squidmesh_sdk.errors.DispatchFailed` is raised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from squidmesh_sdk import errors, strict_json, telemetry
from squidmesh_sdk.graph import COMPLETE_TARGET
from squidmesh_sdk.runtime import dispatcher, inputs, progression
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import StepCompleted
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import audit
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
) -> Run:
    """Resume a run paused at a pause step (``resumed``) or an approval step.

    Raises:
        InvalidResume: malformed actor, comment or metadata (an approval decision needs an
            actor).
        InvalidRunId, RunNotFound: no such run.
        InvalidTransition: the run is not paused.
        InvalidStep: the paused step is of the other kind, or its persisted target is no longer
            a step of the workflow.
        DispatchFailed: the executor refused the next step; nothing changed.
    """
    details = _validate(decision, actor, comment, metadata)
    with runtime.database.read() as connection:
        paused = run_store.get_run(connection, run_id)
    verb = {"resumed": "unblock", "approved": "approve", "rejected": "reject"}[decision]
    with (
        telemetry.action(verb, paused.workflow, paused.id, paused.trace_context),
        runtime.transaction() as tx,
    ):
        run = run_store.lock_run(tx.connection, run_id)
        if run.status != "paused":
            raise errors.InvalidTransition(run.status, "running", run_id=run.id)
        step_run = _paused_step_run(tx, run, decision)
        definition = runtime.definition_of(run)
        output, target = _outcome(step_run, decision, details, tx)
        if target != COMPLETE_TARGET and target not in definition.steps:
            raise errors.InvalidStep(
                run.id,
                run.current_step,
                f"the persisted resume target {target!r} is no longer a step of the workflow; "
                "cancel the run",
            )
        attempt = attempt_store.latest_attempt(tx.connection, step_run.id)
        if attempt is None or attempt.status != "running":
            raise errors.InvalidStep(
                run.id, run.current_step, "the paused step has no open attempt"
            )
        attempt_store.complete_attempt(tx, attempt.id)
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
        context = inputs.merge_output(run.context, output)
        duration = tx.now - attempt.inserted_at
        if target == COMPLETE_TARGET:
            run = progression.write_run(
                tx, run, status="completed", context=context, current_step=None, last_error=None
            )
        else:
            run = progression.write_run(
                tx, run, status="running", context=context, current_step=target, last_error=None
            )
            dispatcher.dispatch_steps(runtime, tx, run, [target])
        tx.events.append(StepCompleted(run, step_run.step, attempt.number, duration))
    return run


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


def _paused_step_run(tx: Transaction, run: Run, decision: Decision) -> StepRun:
    step = run.current_step
    step_run = (
        step_run_store.get_step_run(tx.connection, run.id, step) if step is not None else None
    )
    if step_run is None or step_run.status != "running":
        raise errors.InvalidStep(run.id, step, "the paused step is not running")
    kind = (step_run.resume or {}).get("kind")
    if decision == "resumed" and kind != "pause":
        raise errors.InvalidStep(
            run.id,
            step,
            "this step waits for an approval, not an unblock: "
            f"squidmesh runs approve {run.id} --actor NAME (or runs reject)",
        )
    if decision != "resumed" and kind != "approval":
        raise errors.InvalidStep(
            run.id,
            step,
            f"this step is a pause, not an approval: squidmesh runs unblock {run.id} resumes it",
        )
    return step_run


def _outcome(
    step_run: StepRun, decision: Decision, details: Mapping[str, Any], tx: Transaction
) -> tuple[dict[str, Any], str]:
    resume = step_run.resume or {}
    if decision == "resumed":
        return dict(resume.get("output") or {}), str(resume["target"])
    record = {"decision": decision, "decided_at": tx.now.isoformat(), **details}
    key = resume.get("output_key")
    output = {key: record} if isinstance(key, str) and key else record
    target = resume["ok_target"] if decision == "approved" else resume["error_target"]
    return output, str(target)
