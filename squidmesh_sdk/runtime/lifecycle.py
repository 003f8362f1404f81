"""Operator actions on whole runs: cancel, replay, inspect and explain."""

from __future__ import annotations

import dataclasses

from squidmesh_sdk import errors, telemetry
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.runtime import dispatcher, holds, manual
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RunCreated, RunTransitioned, StepFailed
from squidmesh_sdk.runtime.explanation import RunExplanation, explain
from squidmesh_sdk.runtime.inspection import step_states
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import audit, run_creation, run_reads, step_run_reads
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["cancel_locked", "cancel_run", "explain_run", "inspect_run", "replay_run"]


def cancel_run(
    runtime: Runtime,
    run_id: str,
    *,
    actor: manual.Actor | None = None,
    reason: str | None = None,
) -> Run:
    """Cancel a run: at once unless a step body is running, else once that step ends.

    The request is recorded in the run's audit trail in the same transaction: a ``cancelled``
    event at the step the run was at, with ``actor``, ``reason`` (as the comment) and the
    status it left the run in (``{"status": "cancelled"}`` or ``"cancelling"``).

    A run waiting for a timer, a retry delay, a queued step, a pause or an approval is
    ``cancelled`` by this transaction; the jobs of the database queue it no longer needs are
    deleted in it too (any other executor's delayed job finds the run cancelled and skips). A
    run with a step running becomes ``cancelling``; see :func:`run_store.cancel_run`.

    Raises:
        InvalidResume: a malformed actor or reason; nothing changed.
        InvalidRunId, RunNotFound: no such run.
        InvalidTransition: the run is finished or already cancelling.
    """
    details = manual.validate_cancellation(actor, reason)
    runtime.check_schema()
    with runtime.database.read() as connection:
        target = run_reads.get_run(connection, run_id)
    with (
        telemetry.action("cancel", target.workflow, target.id, target.trace_context),
        runtime.transaction() as tx,
    ):
        before = run_store.lock_run(tx.connection, run_id)
        return cancel_locked(
            runtime, tx, before, actor=details.get("actor"), reason=details.get("reason")
        )


def cancel_locked(
    runtime: Runtime,
    tx: Transaction,
    before: Run,
    *,
    actor: manual.Actor | None,
    reason: str | None,
) -> Run:
    """:func:`cancel_run` inside ``tx``, which holds the run's lock (``before``: as locked).

    Also how a parent's cancellation cancels its children (:mod:`.children`).

    Raises:
        InvalidTransition: the run is finished or already cancelling.
    """
    run, from_status = run_store.cancel_run(tx, before.id)
    if from_status == "paused" and before.current_step is not None:
        step_run = step_run_reads.get_step_run(tx.connection, run.id, before.current_step)
        latest = attempt_store.latest_attempt(tx.connection, step_run.id) if step_run else None
        if step_run is not None and latest is not None and latest.status == "failed":
            duration = tx.now - latest.inserted_at
            error = run_store.PAUSE_CANCELLATION_ERROR
            tx.events.append(StepFailed(run, step_run.step, latest.number, duration, error))
    if from_status in ("running", "retrying"):
        cancelling = dataclasses.replace(run, status="cancelling")
        tx.events.append(RunTransitioned(cancelling, from_status, "cancelling"))
        if run.status == "cancelled":
            tx.events.append(RunTransitioned(run, "cancelling", "cancelled"))
    else:
        tx.events.append(RunTransitioned(run, from_status, run.status))
    if run.status == "cancelled":
        job_store.discard_queued(tx, run.id)
    elif run.status == "cancelling":
        job_store.release_to_any_worker(tx, run.id)
    audit.record_event(
        tx,
        run.id,
        "cancelled",
        step=before.current_step,
        actor=actor,
        comment=reason,
        metadata={"status": run.status},
    )
    return run


def replay_run(
    runtime: Runtime,
    run_id: str,
    *,
    allow_irreversible: bool = False,
    actor: manual.Actor | None = None,
    reason: str | None = None,
) -> Run:
    """Start a new run with the payload and trigger of ``run_id``, linked to it.

    A ``replayed`` audit event on the source run, in the same transaction, records who asked
    (``actor``), why (``reason``, as the comment) and the new run's id.

    Raises:
        InvalidResume: a malformed actor or reason; nothing changed.
        InvalidRunId, RunNotFound: no such run.
        InvalidWorkflow: the run's workflow is not registered with this runtime.
        UnsafeReplay: completed irreversible or non-compensatable steps block it, unless
            ``allow_irreversible`` is ``True``.
        DispatchFailed: the executor refused the first step; nothing was saved.
    """
    details = manual.validate_cancellation(actor, reason)
    runtime.check_schema()
    with runtime.database.read() as connection:
        source = run_reads.get_run(connection, run_id)
    definition = runtime.definition(source.workflow)
    attributes = {telemetry.WORKFLOW: source.workflow, "squidmesh.replayed_from": source.id}
    with (
        telemetry.action("replay", source.workflow, source.id, source.trace_context),
        telemetry.span(f"run {source.workflow}", attributes=attributes, new_trace=True) as root,
        runtime.transaction() as tx,
    ):
        run = run_creation.replay_run(
            tx,
            definition,
            source.id,
            allow_irreversible=allow_irreversible,
            trace_context=telemetry.carrier_of(root) or telemetry.generated_carrier(),
        )
        root.set_attribute(telemetry.RUN_ID, run.id)
        root.set_attribute(telemetry.TRIGGER, run.trigger)
        dispatcher.dispatch_run(runtime, tx, run)
        audit.record_event(
            tx,
            source.id,
            "replayed",
            actor=details.get("actor"),
            comment=details.get("reason"),
            metadata={"replay_run_id": run.id, "allow_irreversible": allow_irreversible},
        )
        tx.events.insert(0, RunCreated(run, replayed_from=source.id))
    return run


def inspect_run(runtime: Runtime, run_id: str, *, include_history: bool = False) -> Run:
    """Read a run; with history also its step runs, attempts, audit events and step states.

    Raises:
        InvalidRunId, RunNotFound: no such run.
    """
    runtime.check_schema()
    with runtime.database.read() as connection:
        run = run_reads.get_run(connection, run_id, include_history=include_history)
    definition, _ = _pinned_definition(runtime, run)
    if not include_history or definition is None:
        return run
    return dataclasses.replace(run, steps=step_states(definition, run.step_runs or ()))


def explain_run(runtime: Runtime, run_id: str) -> RunExplanation:
    """Why the run is where it is, and what can be done next.

    Raises:
        InvalidRunId, RunNotFound: no such run.
    """
    run = inspect_run(runtime, run_id, include_history=True)
    definition, unavailable = _pinned_definition(runtime, run)
    hold = dead_letter = None
    if not run.terminal or run.status == "failed":
        with runtime.database.read() as connection:
            dead_letter = holds.find_dead_letter(connection, run.id)
            if run.status in ("running", "pending", "retrying"):
                hold = holds.find_hold(connection, run.id, runtime.clock.now())
    return explain(
        run,
        definition,
        stale_step_timeout=runtime.stale_step_timeout,
        unavailable=unavailable,
        current_definition=runtime.workflows.get(run.workflow),
        hold=hold,
        dead_letter=dead_letter,
    )


def _pinned_definition(
    runtime: Runtime, run: Run
) -> tuple[WorkflowDefinition | None, errors.DefinitionUnavailable | None]:
    """The definition the run is pinned to, or why this runtime cannot show it."""
    try:
        return runtime.definition_of(run), None
    except errors.DefinitionUnavailable as exc:
        return None, exc
    except errors.InvalidWorkflow:
        return None, None
