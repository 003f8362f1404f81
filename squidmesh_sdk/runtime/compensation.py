"""Saga rollback: after a run fails for good, undo its completed steps, newest first.

Each completed step with a ``@step.compensate`` callback is compensated once: its status,
output or error and times are recorded under ``recovery["compensation"]`` on the original step
run. A failing callback is recorded and the others still run; the run stays ``failed`` and its
``last_error`` then has kind ``compensation_failed``, the step's own error as ``cause`` and
the callbacks' errors in ``details["compensation_failures"]``. Callbacks are not retried.

A redelivered compensation job skips callbacks already completed. A callback that was started
but whose result was never recorded (the process died) runs again: callbacks, like steps,
must be idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from opentelemetry.trace import Span, SpanKind

from squidmesh_sdk import error_records, errors, telemetry
from squidmesh_sdk.definition.context import StepContext, StepLogger
from squidmesh_sdk.graph import StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import dispatcher, inputs
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.failures import describe_error
from squidmesh_sdk.runtime.invoke import call_body
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run, StepRun

__all__ = ["compensate", "dispatch_if_available"]

logger = logging.getLogger("squidmesh_sdk.runtime")

COMPENSATION_FAILED = "workflow step failed and compensation failed"

_compensations = telemetry.meter.create_counter(
    "squidmesh.compensations", unit="{callback}", description="Saga compensation callbacks run"
)


def pending_compensations(
    definition: WorkflowDefinition, completed: list[StepRun]
) -> list[tuple[StepRun, StepNode]]:
    """Completed steps (newest first) whose callback has not completed yet."""
    todo = []
    for step_run in completed:
        node = definition.steps.get(step_run.step)
        if node is None or node.compensation is None or not node.recovery.compensatable:
            continue
        state = (step_run.recovery or {}).get("compensation") or {}
        if state.get("status") != "completed":
            todo.append((step_run, node))
    return todo


def dispatch_if_available(
    runtime: Runtime, tx: Transaction, run: Run, definition: WorkflowDefinition
) -> Run:
    """Enqueue the rollback of a run that just failed, if any completed step can be undone.

    Called in the transaction that failed the run. If the executor refuses, the run still
    fails, and ``last_error["details"]["compensation_dispatch"]`` says why no rollback was queued.
    """
    completed = step_run_store.completed_step_runs_for_compensation(tx.connection, run.id)
    if not pending_compensations(definition, completed):
        return run
    try:
        dispatcher.dispatch_compensation(runtime, tx, run)
    except errors.DispatchFailed as exc:
        error = dict(run.last_error or {})
        error["details"] = {**error.get("details", {}), "compensation_dispatch": exc.reason}
        return run_store.write_run(tx, run, last_error=error)
    return run


def compensate(
    runtime: Runtime, run_id: str, *, trace: Mapping[str, Any] | None = None
) -> Literal["compensated", "skipped"]:
    """Run the pending compensation callbacks of a failed run.

    Traced as ``compensate <workflow>`` in the run's trace (``trace`` is the job payload's
    trace context), with a ``compensate <step>`` span per callback.

    Raises:
        RunNotFound, InvalidWorkflow: the run or its workflow is not there.
    """
    carrier = trace or {}
    with telemetry.span(
        "compensate",
        kind=SpanKind.CONSUMER,
        parent=carrier.get("run"),
        links=telemetry.link_to(carrier.get("send")),
        attributes={telemetry.RUN_ID: run_id},
    ) as span:
        outcome = _compensate_run(runtime, run_id, span)
        span.set_attribute(telemetry.OUTCOME, outcome)
        return outcome


def _compensate_run(runtime: Runtime, run_id: str, span: Span) -> Literal["compensated", "skipped"]:
    with runtime.database.read() as connection:
        run = run_store.get_run(connection, run_id)
        completed = step_run_store.completed_step_runs_for_compensation(connection, run.id)
    span.update_name(f"compensate {run.workflow}")
    span.set_attribute(telemetry.WORKFLOW, run.workflow)
    if run.status != "failed":
        logger.warning(
            "compensation delivered for a run that is not failed",
            extra={"run_id": run.id, "workflow": run.workflow, "status": run.status},
        )
        return "skipped"
    definition = runtime.definition(run.workflow)
    failures: list[dict[str, Any]] = []
    for step_run, node in pending_compensations(definition, completed):
        error = _compensate_step(runtime, run, step_run, node)
        if error is not None:
            failures.append(error)
    if failures:
        with runtime.transaction() as tx:
            locked = run_store.lock_run(tx.connection, run.id)
            original = locked.last_error
            if (original or {}).get("kind") == "compensation_failed":  # a redelivery
                original = (original or {}).get("cause")
            run_store.write_run(
                tx,
                locked,
                last_error=error_records.error_record(
                    "compensation_failed",
                    COMPENSATION_FAILED,
                    step=locked.current_step,
                    details={"compensation_failures": failures},
                    cause=original,
                ),
            )
    return "compensated"


def _compensate_step(
    runtime: Runtime, run: Run, step_run: StepRun, node: StepNode
) -> dict[str, Any] | None:
    callback = node.compensation
    assert callback is not None  # noqa: S101 - filtered by pending_compensations
    base = {"callback": callback.qualname}
    with runtime.transaction() as tx:
        run_store.lock_run(tx.connection, run.id)
        _record(tx, step_run, {**base, "status": "running", "started_at": tx.now.isoformat()})
        started = tx.now
    context = StepContext(
        run_id=run.id,
        workflow=run.workflow,
        step=node.name,
        attempt=1,
        trigger=run.trigger,
        payload=run.payload,
        schedule=run.schedule,
        compensating=True,
        failure=run.last_error,
        logger=StepLogger(
            logging.getLogger("squidmesh_sdk.step"),
            {
                "run_id": run.id,
                "workflow": run.workflow,
                "step": node.name,
                "attempt": 1,
                "compensating": True,
            },
        ),
    )
    state = {**inputs.state(run), **(step_run.output or {})}
    error: dict[str, Any] | None = None
    attributes = telemetry.run_attributes(run.workflow, run.id, **{telemetry.STEP: node.name})
    with telemetry.span(f"compensate {node.name}", attributes=attributes) as span:
        try:
            output = inputs.normalize_output(node.name, call_body(callback, state, context))
        except Exception as exc:  # noqa: BLE001 - a failing callback is recorded, not raised
            error = describe_error(exc, step=node.name)
            telemetry.fail(span, exc)
        _compensations.add(
            1,
            {
                telemetry.WORKFLOW: run.workflow,
                telemetry.STEP: node.name,
                telemetry.OUTCOME: "failed" if error else "completed",
            },
        )
    with runtime.transaction() as tx:
        run_store.lock_run(tx.connection, run.id)
        result: dict[str, Any] = {**base, "started_at": started.isoformat()}
        if error is None:
            result.update(status="completed", output=output, completed_at=tx.now.isoformat())
        else:
            result.update(status="failed", error=error, failed_at=tx.now.isoformat())
        _record(tx, step_run, result)
    if error is not None:
        logger.error(
            "compensation callback failed",
            extra={"run_id": run.id, "workflow": run.workflow, "step": node.name},
        )
        return {k: v for k, v in error.items() if k != "traceback"}
    return None


def _record(tx: Transaction, step_run: StepRun, compensation: Mapping[str, Any]) -> None:
    current = step_run_store.get_step_run(tx.connection, step_run.run_id, step_run.step)
    recovery = dict((current.recovery if current else step_run.recovery) or {})
    recovery["compensation"] = dict(compensation)
    step_run_store.update_recovery(tx, step_run.id, recovery)
