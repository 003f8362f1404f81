"""Moving a run on after a step finished: route, retry, complete, fail or finish cancelling.

Every function here runs inside the transaction that recorded the step's result, with the run
row locked, so the result and the work it implies commit together. A successor the executor
refuses does not undo the step's result: the run is marked failed in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squidmesh_sdk import error_records, errors
from squidmesh_sdk.graph import COMPLETE_TARGET, StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import compensation, dispatcher, inputs
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RetryScheduled, RunTransitioned
from squidmesh_sdk.runtime.failures import RetryDecision
from squidmesh_sdk.store import audit
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run, RunStatus, StepRun
from squidmesh_sdk.store.runs import UNSET

__all__ = ["advance_after_failure", "advance_after_success", "finish_cancelling", "write_run"]

DISPATCH_FAILED = "failed to dispatch workflow step"


def write_run(
    tx: Transaction,
    run: Run,
    *,
    status: RunStatus | None = None,
    **fields: Any,
) -> Run:
    """Write a locked run and record a transition event when its status changes."""
    updated = run_store.write_run(tx, run, status=status or UNSET, **fields)
    if updated.status != run.status:
        tx.events.append(RunTransitioned(updated, run.status, updated.status))
    return updated


def finish_cancelling(
    tx: Transaction, run: Run, *, context: Mapping[str, Any] | None = None
) -> Run:
    """Complete a cooperative cancellation: ``cancelling -> cancelled``, nothing dispatched."""
    return write_run(
        tx,
        run,
        status="cancelled",
        context=context if context is not None else UNSET,
        current_step=None,
        last_error=None,
    )


def _step_ended_while_cancelling(
    tx: Transaction, run: Run, *, context: Mapping[str, Any] | None = None
) -> Run:
    """A step of a cancelling run ended: the run is cancelled unless another step still runs.

    (Only a dependency run can have another: its branches run at once.) That step's own
    outcome, or the delivery that takes it over from a dead worker, finishes the cancellation.
    """
    if run_store.running_steps(tx.connection, run.id):
        return write_run(tx, run, context=context) if context is not None else run
    return finish_cancelling(tx, run, context=context)


def advance_after_success(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    output: Mapping[str, Any],
) -> Run:
    """Merge a completed step's (namespaced) output and move the run on.

    A finished run only records the step; a cancelling run becomes cancelled (once no other
    step of it runs).
    """
    if run.terminal:
        return run
    context = inputs.merge_output(run.context, output)
    if run.status == "cancelling":
        return _step_ended_while_cancelling(tx, run, context=context)
    if definition.shape == "dependency":
        return _advance_dependencies(runtime, tx, run, definition, node, context)
    target = definition.route(node.name, "ok")
    # The compiler guarantees an ok route for every step of a transition workflow.
    assert target is not None  # noqa: S101
    delay = float(node.options["duration"]) if node.kind == "wait" else None
    return _route(runtime, tx, run, target, context=context, delay=delay)


def advance_after_failure(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    step_run: StepRun,
    attempt: int,
    error: Mapping[str, Any],
    decision: RetryDecision,
) -> Run:
    """Retry the step, take its error route, or fail the run."""
    if run.terminal:
        return run
    if run.status == "cancelling":
        return _step_ended_while_cancelling(tx, run)
    last_error = {**{k: v for k, v in error.items() if k != "traceback"}, "step": node.name}
    transition = definition.shape == "transition"
    if decision.retry:
        # A retrying run names the step it waits to retry, in both graph shapes.
        run = write_run(tx, run, status="retrying", current_step=node.name, last_error=last_error)
        try:
            dispatcher.dispatch_steps(
                runtime, tx, run, [node.name], schedule_in=decision.delay or None
            )
        except errors.DispatchFailed as exc:
            return _fail(
                runtime,
                tx,
                run,
                _dispatch_failed(exc, node.name, {"next_steps": [node.name]}, cause=last_error),
                current_step=node.name,
            )
        tx.events.append(RetryScheduled(run, node.name, attempt, decision.delay))
        return run
    edge = definition.route_edge(node.name, "error") if transition else None
    if edge is not None:
        if edge.recovery is not None:
            step_run_store.record_failure_recovery(
                tx, step_run.id, strategy=edge.recovery, target=edge.target
            )
            audit.record_event(
                tx,
                run.id,
                "compensation_routed" if edge.recovery == "compensation" else "undo_routed",
                step=node.name,
                metadata={"target": edge.target},
            )
        return _route(runtime, tx, run, edge.target, context=None, delay=None)
    return _fail(runtime, tx, run, last_error, current_step=node.name)


def _route(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    target: str,
    *,
    context: Mapping[str, Any] | None,
    delay: float | None,
) -> Run:
    """Send a transition run to ``target``: complete it, or make the step current and enqueue it."""
    merged = context if context is not None else UNSET
    if target == COMPLETE_TARGET:
        return write_run(
            tx, run, status="completed", context=merged, current_step=None, last_error=None
        )
    run = write_run(tx, run, status="running", context=merged, current_step=target, last_error=None)
    try:
        dispatcher.dispatch_steps(runtime, tx, run, [target], schedule_in=delay)
    except errors.DispatchFailed as exc:
        return _fail(
            runtime,
            tx,
            run,
            _dispatch_failed(exc, target, {"next_steps": [target]}),
            current_step=target,
        )
    return run


def _advance_dependencies(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    context: Mapping[str, Any],
) -> Run:
    """Complete the run, or schedule every step whose dependencies have all completed.

    Readiness is decided per step, not per phase: a join runs as soon as its own dependencies
    are done, even while unrelated branches are still running.
    """
    statuses = step_run_store.step_statuses(tx.connection, run.id)
    if all(statuses.get(name) == "completed" for name in definition.steps):
        return write_run(
            tx, run, status="completed", context=context, current_step=None, last_error=None
        )
    run = write_run(tx, run, context=context)
    ready = [
        candidate.name
        for candidate in definition.steps.values()
        if candidate.name not in statuses
        and all(statuses.get(dep) == "completed" for dep in candidate.depends_on)
    ]
    if not ready:
        return run
    try:
        dispatcher.dispatch_steps(runtime, tx, run, ready, schedule_pending=True)
    except errors.DispatchFailed as exc:
        return _fail(
            runtime,
            tx,
            run,
            _dispatch_failed(exc, None, {"next_steps": ready}),
            current_step=None,
        )
    return run


def _dispatch_failed(
    exc: errors.DispatchFailed,
    step: str | None,
    details: Mapping[str, Any],
    *,
    cause: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's error when the executor refused its next work (``reason``: what it said)."""
    return error_records.error_record(
        "dispatch_failed",
        DISPATCH_FAILED,
        code=exc.code,
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        step=step,
        details={**details, "reason": exc.reason},
        cause=cause,
    )


def _fail(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    error: Mapping[str, Any],
    *,
    current_step: str | None,
) -> Run:
    """Fail the run and, in the same transaction, queue the rollback of what can be undone."""
    run = write_run(tx, run, status="failed", current_step=current_step, last_error=error)
    return compensation.dispatch_if_available(runtime, tx, run, runtime.definition_of(run))
