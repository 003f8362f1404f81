"""Turns runtime intent into executor calls, inside the caller's transaction.

Each function returns nothing and appends the events it produced to ``tx.events``, which the
runtime emits only after commit. An executor that refuses work raises; the dispatcher turns
that into :class:`~squidmesh_sdk.errors.DispatchFailed` for the caller to handle (roll back, or
fail the run in the same transaction). Database errors pass through untouched: they abort the
transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, get_current_span
from sqlalchemy.exc import SQLAlchemyError

from squidmesh_sdk import errors, telemetry
from squidmesh_sdk.definition.flow import concurrency_value
from squidmesh_sdk.graph import DEADLINE_STEP, StepKey, WorkflowDefinition
from squidmesh_sdk.port import flow, payloads
from squidmesh_sdk.port.executor import Executor
from squidmesh_sdk.runtime import inputs
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import CompensationDispatched, StepDispatched
from squidmesh_sdk.store import prepared
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["before_executor", "dispatch_compensation", "dispatch_run", "dispatch_steps"]

T = TypeVar("T")


def dispatch_run(runtime: Runtime, tx: Transaction, run: Run) -> None:
    """Dispatch the first work of a new (or replayed) run.

    A single-path graph's entry step is enqueued; the entry steps of any other graph are
    scheduled (``pending`` rows with their input snapshots) and enqueued as one batch. A
    workflow with a deadline also gets its deadline job.

    Raises:
        DispatchFailed: the executor refused.
    """
    definition = runtime.definition_of(run)
    if definition.has_concurrency and not getattr(
        runtime.executor, "accepts_concurrency_limits", False
    ):
        # Refused before the first job: a run that could start would fail at its first
        # limited step, or run it unlimited.
        raise errors.FlowControlUnsupported(run.workflow, type(runtime.executor).__name__)
    if definition.single_path:
        assert run.current_step is not None  # noqa: S101 - single-path runs start at their entry
        dispatch_steps(runtime, tx, run, [run.current_step])
    else:
        dispatch_steps(runtime, tx, run, definition.entry_steps, schedule_pending=True)
    if definition.deadline is not None:
        dispatch_steps(runtime, tx, run, [DEADLINE_STEP], schedule_in=definition.deadline)


def dispatch_steps(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    steps: Sequence[str],
    *,
    schedule_pending: bool = False,
    schedule_in: float | None = None,
) -> list[str]:
    """Enqueue ``steps`` of ``run`` (one job, or one atomic batch); return those enqueued.

    With ``schedule_pending`` each step first gets a ``pending`` step run holding its input
    snapshot, and only steps that did not have a row yet are enqueued: dispatching the same
    fan-out twice enqueues nothing the second time.

    Raises:
        DispatchFailed: the executor refused (the caller's transaction decides what survives).
    """
    steps = list(dict.fromkeys(steps))
    # Before anything is written for the steps: a key with no value refuses them all.
    limits = _concurrency(runtime.definition_of(run), run, steps)
    if schedule_pending:
        definition = runtime.definition_of(run)
        steps = step_run_store.schedule_steps(
            tx, run.id, [_scheduled(definition, run, step) for step in steps]
        )
    if not steps:
        return []
    executor = runtime.executor
    before_executor(tx, executor)
    name = f"send {steps[0]}" if len(steps) == 1 else f"send {run.workflow}"
    try:
        with _sending(name, run, steps, schedule_in) as send_span, flow.queueing(limits):
            if len(steps) == 1:
                metadata = [
                    _call(lambda: executor.enqueue_step(tx, run, steps[0], schedule_in=schedule_in))
                ]
            else:
                metadata = list(
                    _call(lambda: executor.enqueue_steps(tx, run, steps, schedule_in=schedule_in))
                )
            _describe(send_span, metadata)
    except errors.DispatchFailed:
        if schedule_pending:
            # The caller may still commit (to fail the run): leave no step looking scheduled.
            step_run_store.delete_pending_steps(tx, run.id, steps)
        raise
    tx.events.append(StepDispatched(run, tuple(steps), schedule_in, metadata))
    return steps


def dispatch_compensation(runtime: Runtime, tx: Transaction, run: Run) -> None:
    """Enqueue the saga rollback of a failed run.

    Raises:
        DispatchFailed: the executor refused.
    """
    before_executor(tx, runtime.executor)
    with _sending(f"send compensation {run.workflow}", run, (), None) as send_span:
        metadata = _call(lambda: runtime.executor.enqueue_compensation(tx, run))
        _describe(send_span, [metadata])
    tx.events.append(CompensationDispatched(run, metadata))


@contextmanager
def _sending(
    name: str, run: Run, steps: Sequence[str], schedule_in: float | None
) -> Iterator[Span]:
    """A PRODUCER span around an enqueue; the payloads built inside carry its context."""
    current = get_current_span()
    if not (current.is_recording() or telemetry.tracing()):
        # No span would record, so none is made: a send span would only wear the current
        # span's context (the delivery's, in the run's trace), and that is what its carrier
        # would say. The run's own context travels in any case. (A recording span current
        # here, from a provider the host did not install globally, gets its send span.)
        trace = {"send": telemetry.carrier_of(current), "run": run.trace_context}
        with payloads.carrying({k: v for k, v in trace.items() if v} or None):
            yield INVALID_SPAN
        return
    attributes = telemetry.run_attributes(
        run.workflow,
        run.id,
        **{
            telemetry.MESSAGING_SYSTEM: telemetry.SYSTEM,
            telemetry.MESSAGING_OPERATION: "send",
            telemetry.MESSAGING_OPERATION_NAME: "send",
            telemetry.STEP: steps[0] if len(steps) == 1 else None,
            "squidmesh.steps": list(steps) if len(steps) > 1 else None,
            telemetry.MESSAGING_BATCH_COUNT: len(steps) if len(steps) > 1 else None,
            "squidmesh.schedule_in": schedule_in,
        },
    )
    with telemetry.span(name, kind=SpanKind.PRODUCER, attributes=attributes) as send_span:
        trace = {"send": telemetry.carrier_of(send_span), "run": run.trace_context}
        with payloads.carrying({k: v for k, v in trace.items() if v} or None):
            yield send_span


def _describe(send_span: Span, metadata: Sequence[Mapping[str, Any]]) -> None:
    if not send_span.is_recording() or not metadata:
        return
    first = metadata[0]
    attributes: dict[str, str] = {}
    queue = first.get("queue")
    if isinstance(queue, str):
        attributes[telemetry.MESSAGING_DESTINATION] = queue
    job_id = first.get("message_id", first.get("job_id", first.get("outbox_id")))
    if len(metadata) == 1 and job_id is not None:
        attributes[telemetry.MESSAGING_MESSAGE_ID] = str(job_id)
    if attributes:
        send_span.set_attributes(attributes)  # one call: each takes the span's lock


def _concurrency(
    definition: WorkflowDefinition, run: Run, steps: Sequence[str]
) -> dict[str, flow.StepConcurrency] | None:
    """Each step job's concurrency key and limit, read from the run as it is now.

    Raises:
        InvalidConcurrencyKey: a limited step's key has no usable value in the run.
    """
    if not definition.has_concurrency:
        return None  # the common case: no lookup per step
    scope = {"payload": run.payload, "context": run.context}
    found: dict[str, flow.StepConcurrency] = {}
    for step in steps:
        if step == DEADLINE_STEP:
            continue  # a timer that fails the run; it runs no step body to limit
        name = StepKey.parse(step).name
        limit = definition.concurrency_of(name)
        if limit is None:
            continue
        ok, value = concurrency_value(limit, scope)
        if not ok:
            raise errors.InvalidConcurrencyKey(run.workflow, name, limit.key)
        found[step] = flow.StepConcurrency(
            key=f"{limit.scope or definition.name}:{limit.key}={value}", limit=limit.limit
        )
    return found


def _scheduled(
    definition: WorkflowDefinition, run: Run, step: str
) -> tuple[str, dict[str, object], dict[str, object]]:
    node = definition.step(StepKey.parse(step).name)
    snapshot = inputs.snapshot(node, inputs.state(run))
    return step, snapshot, node.recovery.to_dict()


def before_executor(tx: Transaction, executor: Executor) -> None:
    """Send statements held back or in the pipeline, unless the executor says it need not.

    An executor that uses the driver's connection directly would confuse a pipeline; one that
    only runs SQLAlchemy statements (which send pending ones first) or does not touch the
    connection declares ``writes_through_sqlalchemy`` (see :mod:`squidmesh_sdk.port.executor`).
    """
    if not getattr(executor, "writes_through_sqlalchemy", False):
        prepared.flush(tx.connection)


def _call(enqueue: Callable[[], T]) -> T:
    try:
        return enqueue()
    except (SQLAlchemyError, errors.StaleRecord):
        # Not a refusal: the database failed, or a statement sent ahead found its row changed.
        raise
    except Exception as exc:
        raise errors.DispatchFailed(f"{type(exc).__name__}: {exc}") from exc
