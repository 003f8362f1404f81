"""Saga rollback: after a run fails for good, undo its completed steps, newest first.

Each completed step with a ``@step.compensate`` callback is compensated once: its status,
output or error and times are recorded under ``recovery["compensation"]`` on the original step
run. A failing callback is recorded and the others still run; the run stays ``failed`` and its
``last_error`` then has kind ``compensation_failed``, the step's own error as ``cause`` and
the callbacks' errors in ``details["compensation_failures"]``. Callbacks are not retried.

Callbacks are *claimed* like steps: under the run's lock a delivery marks the next callback
``running`` (attempt n) and only then calls it, so of any number of concurrent deliveries of
the compensation job exactly one runs each callback; the others find it running and do
nothing. A callback's result, the claim of the next one and, after the last, the run's
``last_error`` and the job's settlement commit together. A callback left running by a
delivery that died is taken over, as a step is: at once by a delivery that knows its
predecessor died (``Delivery.reclaim``), otherwise once ``stale_step_timeout`` has passed since
it started. It then runs again (attempt n + 1): callbacks, like steps, must be idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from opentelemetry.trace import Span, SpanKind

from squidmesh_sdk import error_records, errors, telemetry
from squidmesh_sdk.definition.context import StepContext, StepLogger
from squidmesh_sdk.graph import StepKey, StepNode, WorkflowDefinition
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import dispatcher, inputs
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import CompensationFinished
from squidmesh_sdk.runtime.failures import describe_error
from squidmesh_sdk.runtime.invoke import call_body
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_run_reads
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run, StepRun

__all__ = ["compensate", "dispatch_if_available"]

logger = logging.getLogger("squidmesh_sdk.runtime")

COMPENSATION_FAILED = "workflow step failed and compensation failed"

_FINISHED = ("completed", "failed")

_compensations = telemetry.meter.create_counter(
    "squidmesh.compensations", unit="{callback}", description="Saga compensation callbacks run"
)


def compensatable(
    definition: WorkflowDefinition, completed: list[StepRun]
) -> list[tuple[StepRun, StepNode]]:
    """Completed steps (newest first) that have a compensation callback.

    A map step is compensated element by element: its own step run (the list of outputs) is
    not compensated again.
    """
    found = []
    for step_run in completed:
        key = StepKey.parse(step_run.step)
        node = definition.steps.get(key.name)
        if node is None or node.compensation is None or not node.recovery.compensatable:
            continue
        if node.map_over is not None and key.item is None:
            continue
        found.append((step_run, node))
    return found


def pending_compensations(
    definition: WorkflowDefinition, completed: list[StepRun]
) -> list[tuple[StepRun, StepNode]]:
    """Completed steps (newest first) whose callback has not finished (run or failed) yet."""
    return [
        (step_run, node)
        for step_run, node in compensatable(definition, completed)
        if _state(step_run).get("status") not in _FINISHED
    ]


def dispatch_if_available(
    runtime: Runtime, tx: Transaction, run: Run, definition: WorkflowDefinition
) -> Run:
    """Enqueue the rollback of a run that just failed, if any completed step can be undone.

    Called in the transaction that failed the run. If the executor refuses, the run still
    fails, and ``last_error["details"]["compensation_dispatch"]`` says why no rollback was queued.
    """
    completed = step_run_reads.completed_step_runs_for_compensation(tx.connection, run.id)
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
    runtime: Runtime,
    run_id: str,
    *,
    delivery: Delivery | None = None,
    trace: Mapping[str, Any] | None = None,
) -> Literal["compensated", "skipped"]:
    """Run the pending compensation callbacks of a failed run.

    Returns ``"compensated"`` when this delivery ran callbacks or found the rollback finished,
    ``"skipped"`` when the run is not failed or another delivery is running its callbacks.
    ``delivery`` is the queue's part, as for steps: its ``reclaim`` lets a callback left
    running be taken over at once, and it is settled with the rollback's last write.

    Traced as ``compensate <workflow>`` in the run's trace (``trace`` is the job payload's
    trace context), with a ``compensate <step>`` span per callback.

    Raises:
        RunNotFound, InvalidWorkflow: the run or its workflow is not there.
    """
    carrier = trace or {}
    delivery = delivery or Delivery()
    attributes = {
        telemetry.RUN_ID: run_id,
        **telemetry.consumer_attributes(delivery.queue, delivery.message_id),
    }
    with telemetry.span(
        "compensate",
        kind=SpanKind.CONSUMER,
        parent=carrier.get("run"),
        links=telemetry.link_to(carrier.get("send")),
        attributes=attributes,
    ) as span:
        outcome = _compensate_run(runtime, run_id, span, delivery)
        span.set_attribute(telemetry.OUTCOME, outcome)
        return outcome


@dataclass(frozen=True, slots=True)
class _Claim:
    """One callback this delivery marked running, and may now call."""

    run: Run
    step_run: StepRun
    node: StepNode
    attempt: int
    started_at: datetime


_Busy = Literal["busy"]
_Done = Literal["done"]


def _compensate_run(
    runtime: Runtime, run_id: str, span: Span, delivery: Delivery
) -> Literal["compensated", "skipped"]:
    with runtime.transaction() as tx:
        run = run_store.lock_run(tx.connection, run_id)
        span.update_name(f"compensate {run.workflow}")
        span.set_attribute(telemetry.WORKFLOW, run.workflow)
        if run.status != "failed":
            logger.warning(
                "compensation delivered for a run that is not failed",
                extra={"run_id": run.id, "workflow": run.workflow, "status": run.status},
            )
            delivery.settle_in(tx)
            return "skipped"
        definition = runtime.definition_of(run)
        claimed = _claim_next(runtime, tx, run, definition, reclaim=delivery.reclaim)
        if not isinstance(claimed, _Claim):
            delivery.settle_in(tx)
            return "skipped" if claimed == "busy" else "compensated"
    while True:
        result = _call(claimed)
        with runtime.transaction() as tx:
            run = run_store.lock_run(tx.connection, run_id)
            if not _record_result(tx, claimed, result):
                return "compensated"  # taken over meanwhile: the other delivery goes on
            following = _claim_next(runtime, tx, run, definition, reclaim=False)
            if not isinstance(following, _Claim):
                if following == "done":
                    _record_failures(tx, run, definition)
                delivery.settle_in(tx)
                return "compensated"
        claimed = following


def _claim_next(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    *,
    reclaim: bool,
) -> _Claim | _Busy | _Done:
    """Claim the newest callback not finished yet, under the run's lock held by ``tx``.

    ``"busy"``: another delivery is running it (and may not be taken over); ``"done"``: every
    callback has finished.
    """
    completed = step_run_reads.completed_step_runs_for_compensation(tx.connection, run.id)
    for step_run, node in pending_compensations(definition, completed):
        callback = node.compensation
        assert callback is not None  # noqa: S101 - filtered by pending_compensations
        state = _state(step_run)
        claim: dict[str, Any] = {"callback": callback.qualname, "status": "running"}
        if state.get("status") == "running":
            reason = _takeover_reason(runtime, tx, state, reclaim=reclaim)
            if reason is None:
                return "busy"
            attempt = int(state.get("attempt", 1)) + 1
            claim["taken_over"] = {**reason, "previous_started_at": state.get("started_at")}
            logger.warning(
                "compensation callback taken over",
                extra={"run_id": run.id, "step": node.name, "reason": reason["reason"]},
            )
        else:
            attempt = 1
        claim.update(attempt=attempt, started_at=tx.now.isoformat())
        updated = _record(tx, step_run, claim)
        return _Claim(run, updated, node, attempt, tx.now)
    return "done"


def _takeover_reason(
    runtime: Runtime, tx: Transaction, state: Mapping[str, Any], *, reclaim: bool
) -> dict[str, Any] | None:
    """Why a callback still marked running may be taken over, or ``None`` when it may not."""
    if reclaim:
        return {
            "message": "compensation abandoned: the worker running it stopped",
            "reason": "worker_lost",
        }
    timeout = runtime.stale_step_timeout
    started = state.get("started_at")
    if timeout is None or not isinstance(started, str):
        return None
    if (tx.now - datetime.fromisoformat(started)).total_seconds() < timeout:
        return None
    return {
        "message": "compensation reclaimed after exceeding the stale running timeout",
        "reason": "stale_running_step",
        "stale_step_timeout": timeout,
    }


@dataclass(frozen=True, slots=True)
class _Result:
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def _call(claim: _Claim) -> _Result:
    """Call the claimed callback, outside any transaction."""
    run, node, step_run = claim.run, claim.node, claim.step_run
    callback = node.compensation
    assert callback is not None  # noqa: S101 - only callbacks are claimed
    context = StepContext(
        run_id=run.id,
        workflow=run.workflow,
        step=node.name,
        attempt=claim.attempt,
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
                "attempt": claim.attempt,
                "compensating": True,
            },
        ),
    )
    # The step's own input (a map element's item, say) and output, over the run's state.
    state = {**inputs.state(run), **step_run.input, **(step_run.output or {})}
    attributes = telemetry.run_attributes(run.workflow, run.id, **{telemetry.STEP: node.name})
    result = _Result()
    with telemetry.span(f"compensate {node.name}", attributes=attributes) as span:
        try:
            output = inputs.normalize_output(node.name, call_body(callback, state, context))
            result = _Result(output=output)
        except Exception as exc:  # noqa: BLE001 - a failing callback is recorded, not raised
            result = _Result(error=describe_error(exc, step=node.name))
            telemetry.fail(span, exc)
        _compensations.add(
            1,
            {
                telemetry.WORKFLOW: run.workflow,
                telemetry.STEP: node.name,
                telemetry.OUTCOME: "failed" if result.error else "completed",
            },
        )
    return result


def _record_result(tx: Transaction, claim: _Claim, result: _Result) -> bool:
    """Record the callback's result; ``False`` (nothing written) if it was taken over."""
    current = step_run_reads.get_step_run(tx.connection, claim.run.id, claim.step_run.step)
    state = _state(current) if current is not None else {}
    if state.get("status") != "running" or state.get("attempt", 1) != claim.attempt:
        logger.warning(
            "compensation result discarded: another delivery took the callback over",
            extra={"run_id": claim.run.id, "step": claim.node.name, "attempt": claim.attempt},
        )
        return False
    recorded: dict[str, Any] = {**state}
    if result.error is None:
        recorded.update(status="completed", output=result.output, completed_at=tx.now.isoformat())
    else:
        recorded.update(status="failed", error=result.error, failed_at=tx.now.isoformat())
    _record(tx, claim.step_run, recorded)
    tx.events.append(
        CompensationFinished(
            claim.run, claim.step_run.step, claim.attempt, tx.now - claim.started_at, result.error
        )
    )
    return True


def _record_failures(tx: Transaction, run: Run, definition: WorkflowDefinition) -> None:
    """Once every callback finished, list the failed ones in the run's ``last_error``."""
    completed = step_run_reads.completed_step_runs_for_compensation(tx.connection, run.id)
    failures = []
    for step_run, _ in compensatable(definition, completed):
        state = _state(step_run)
        if state.get("status") == "failed":
            error = state.get("error") or {}
            failures.append({k: v for k, v in error.items() if k != "traceback"})
    if not failures:
        return
    original = run.last_error
    if (original or {}).get("kind") == "compensation_failed":  # recorded already
        original = (original or {}).get("cause")
    run_store.write_run(
        tx,
        run,
        last_error=error_records.error_record(
            "compensation_failed",
            COMPENSATION_FAILED,
            step=run.current_step,
            details={"compensation_failures": failures},
            cause=original,
        ),
    )


def _state(step_run: StepRun) -> Mapping[str, Any]:
    return (step_run.recovery or {}).get("compensation") or {}


def _record(tx: Transaction, step_run: StepRun, compensation: Mapping[str, Any]) -> StepRun:
    current = step_run_reads.get_step_run(tx.connection, step_run.run_id, step_run.step)
    recovery = dict((current.recovery if current else step_run.recovery) or {})
    recovery["compensation"] = dict(compensation)
    return step_run_store.update_recovery(tx, step_run.id, recovery)
