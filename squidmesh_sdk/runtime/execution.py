"""Executing one delivered step: claim, run the body, record the result and move on.

Two transactions per step. The *claim* locks the run row, checks that the delivery is current,
marks the step run ``running`` and opens attempt n. The body then runs outside any transaction
(unless the step asked for one). The *apply* locks the run again, records the result on the
attempt and step run, and routes the run, dispatching the next work in the same commit.

Redelivery is harmless at every point: a job for a step that is not current, for a paused or
finished run, or for a step another delivery is running does nothing; a job for a step that
completed but whose run was not moved on (possible only through the lower-level stores) moves
the run on from the stored output without running the step again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError

from squidmesh_sdk import error_records, errors, state_machine, telemetry
from squidmesh_sdk.definition.context import StepContext, StepLogger
from squidmesh_sdk.definition.outcomes import Branch
from squidmesh_sdk.graph import DEADLINE_STEP, StepKey, StepNode, WorkflowDefinition
from squidmesh_sdk.port.continuation import current_continuation
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import (
    children,
    group_commit,
    inputs,
    mapping,
    progression,
    signals,
    waiting,
)
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import (
    RunEvent,
    StepCompleted,
    StepFailed,
    StepSkipped,
    StepStarted,
)
from squidmesh_sdk.runtime.failures import describe_error, retry_decision
from squidmesh_sdk.runtime.invoke import call_body
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import prepared
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import new_id
from squidmesh_sdk.store.records import Attempt, Run, StepRun

__all__ = ["Outcome", "claim_step", "execute_step"]

Outcome = Literal["executed", "reconciled", "skipped", "cancelled", "paused", "waiting"]
"""What a step delivery did."""

logger = logging.getLogger("squidmesh_sdk.runtime")
step_logger = logging.getLogger("squidmesh_sdk.step")

RECONNECT_WINDOW = 60.0
"""Seconds an outcome write keeps retrying while the database is unreachable."""


@dataclass(frozen=True, slots=True)
class _Claim:
    run: Run
    definition: WorkflowDefinition
    node: StepNode
    step_run: StepRun
    attempt: Attempt
    events: tuple[RunEvent, ...] = ()
    """Events of a claim made ahead (by the transaction that queued or leased the job): they
    are reported inside the delivery's own ``process`` span, where the transition happens."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    output: dict[str, Any] | None = None
    exception: BaseException | None = None
    label: str | None = None
    """The branch the step returned (:class:`~squidmesh_sdk.Branch`), if it did."""


class _Stale(Exception):
    """The step run was finished by someone else while the body ran: discard this result."""


def execute_step(
    runtime: Runtime,
    run_id: str,
    step: str,
    *,
    delivery: Delivery | None = None,
    trace: Mapping[str, Any] | None = None,
) -> Outcome:
    """Execute one delivery of ``step`` of run ``run_id``.

    When the delivery says its previous worker died (``delivery.reclaim``), or once the
    runtime's stale step timeout has passed, a step still marked running is taken over: its
    open attempt is marked ``abandoned`` and a new attempt starts.

    The outcome is recorded with retries while the database is unreachable (a restart, a
    dropped connection): the step is not run again for an outage that only hit the write.

    The delivery is traced as a ``process <step>`` CONSUMER span in the run's trace, linked to
    the ``send`` span that queued it (``trace`` is the job payload's trace context).

    Raises:
        RunNotFound: no such run.
        InvalidWorkflow: the run's workflow is not registered with this runtime.
    """
    carrier = trace or {}
    delivery = delivery or Delivery()
    attributes = {  # the workflow and attempt are added once the run is read
        telemetry.RUN_ID: run_id,
        telemetry.STEP: step,
        **telemetry.consumer_attributes(delivery.queue, delivery.message_id),
    }
    with telemetry.span(
        f"process {step}",
        kind=SpanKind.CONSUMER,
        parent=carrier.get("run"),
        links=telemetry.link_to(carrier.get("send")),
        attributes=attributes,
    ) as span:
        outcome = _execute(runtime, run_id, step, delivery)
        span.set_attribute(telemetry.OUTCOME, outcome)
        return outcome


def claim_step(runtime: Runtime, tx: Transaction, run_id: str, step: str) -> object | None:
    """Claim ``step`` in ``tx``, a transaction that leases its job, for the delivery to follow.

    A worker claiming a job this way saves the step a transaction of its own; the claim goes
    to the delivery as ``Delivery(claim=...)``. Only a step that simply starts is claimed:
    whenever the delivery has something else to decide (the run is finished, paused or
    cancelling, the step is a built-in or manual one, not current, already running...),
    ``None`` is returned before anything is written or reported, so the delivery does exactly
    what it would have done.
    """
    try:
        run = run_store.lock_run(tx.connection, run_id)
        definition = runtime.definition_of(run)
        key = StepKey.parse(step)
        node = definition.steps.get(key.name)
        if run.status not in ("pending", "running", "retrying") or node is None:
            return None
        if node.is_builtin or _starts_map(node, key):
            return None
        step_input = _step_input(tx, run, definition, node, key)
    except Exception:  # noqa: BLE001 - nothing written yet: the delivery decides, and reports
        return None
    if step_input is None:
        return None
    # From here on only what the delivery itself would do once it found the step startable.
    mark = len(tx.events)
    found = _begin(runtime, tx, run, definition, node, key, step_input, reclaim=False, simple=True)
    return _ahead(tx, found, mark) if isinstance(found, _Claim) else None


def _ahead(tx: Transaction, claim: _Claim, mark: int) -> _Claim:
    """``claim``, made ahead of its delivery, holding the events it added to ``tx``.

    Those since ``mark``: the delivery reports them in its own span, not the current one.
    """
    events = tuple(tx.events[mark:])
    del tx.events[mark:]
    return replace(claim, events=events)


def _execute(runtime: Runtime, run_id: str, step: str, delivery: Delivery) -> Outcome:
    ahead = delivery.claim
    if isinstance(ahead, _Claim) and ahead.run.id == run_id and ahead.step_run.step == step:
        # Claimed by the transaction that finished the previous step (a worker continuation).
        claimed = ahead
        span = trace.get_current_span()
        span.set_attribute(telemetry.WORKFLOW, claimed.run.workflow)
        span.set_attribute(telemetry.ATTEMPT, claimed.attempt.number)
        runtime.emit(claimed.events)  # committed with the claim; reported in this span
    else:
        with runtime.transaction() as tx:
            found = _claim(runtime, tx, run_id, step, reclaim=delivery.reclaim)
            if not isinstance(found, _Claim):
                delivery.settle_in(tx)
                return found
        claimed = found
    try:
        try:
            if claimed.node.transaction:
                with runtime.transaction() as tx:
                    result = _invoke(runtime, claimed, tx)
                    _apply(runtime, tx, claimed, result)
                    delivery.settle_in(tx)
            else:
                result = _invoke(runtime, claimed, None)
                _with_reconnects(lambda: _apply_and_settle(runtime, claimed, result, delivery))
        except StatementError as exc:
            if isinstance(exc, OperationalError | InterfaceError):
                raise  # the database is unreachable: the delivery is retried, as before
            # The database refused the outcome (a constraint, a value it cannot store...). That
            # transaction rolled back whole; the failure is recorded in a fresh one, so the
            # step fails once with a clear error instead of being redelivered as if its worker
            # had died.
            refused = _refused(claimed, exc)
            _with_reconnects(lambda: _apply_and_settle(runtime, claimed, refused, delivery))
    except _Stale:
        logger.warning(
            "step result discarded: its step run was finished by another delivery",
            extra={
                "run_id": run_id,
                "workflow": claimed.run.workflow,
                "step": step,
                "attempt": claimed.attempt.number,
            },
        )
        return "skipped"
    return "executed"


def _refused(claim: _Claim, exc: StatementError) -> _Outcome:
    cause = exc.orig if isinstance(exc.orig, BaseException) else exc
    first_line = (str(cause).strip().splitlines() or [""])[0]
    logger.error(
        "the database refused to record a step outcome; the step fails",
        extra={
            "run_id": claim.run.id,
            "workflow": claim.run.workflow,
            "step": claim.node.name,
            "attempt": claim.attempt.number,
            "error": type(exc).__name__,
        },
    )
    refused = errors.OutcomeNotStored(claim.node.name, f"{type(exc).__name__}: {first_line}")
    refused.__cause__ = cause
    return _Outcome(exception=refused)


def _apply_and_settle(
    runtime: Runtime, claim: _Claim, result: _Outcome, delivery: Delivery
) -> None:
    group = group_commit.current()
    if group is not None:
        # Written in one transaction with the outcomes other threads have waiting.
        group.write(
            lambda tx: _settle_outcome(runtime, tx, claim, result, delivery), order=claim.run.id
        )
        return
    with runtime.transaction() as tx:
        _settle_outcome(runtime, tx, claim, result, delivery)


def _settle_outcome(
    runtime: Runtime, tx: Transaction, claim: _Claim, result: _Outcome, delivery: Delivery
) -> None:
    run = _apply(runtime, tx, claim, result)
    delivery.settle_in(tx)
    _claim_ahead(runtime, tx, run)


def _claim_ahead(runtime: Runtime, tx: Transaction, run: Run) -> None:
    """Claim the step this transaction handed to the same worker, in this transaction.

    The worker performs that job next; claiming its step now saves the step a transaction of
    its own. Only for the same run's next step; anything else keeps the ordinary path.
    ``run`` is the run as this transaction left it, still locked: it is not read again.
    """
    offer = current_continuation()
    step = offer.step_to_claim(tx, run.id) if offer is not None else None
    if offer is None or step is None:
        return
    key = StepKey.parse(step)
    node = runtime.definition_of(run).steps.get(key.name)
    if node is None or node.is_builtin or _starts_map(node, key):
        # A built-in step is done by its claim: left to its own delivery, it gets its own
        # ``process`` span, and its transitions (``running -> paused``) are events on it.
        return
    mark = len(tx.events)
    found = _claim(runtime, tx, run.id, step, reclaim=False, locked=run, ahead=True)
    if isinstance(found, _Claim):
        offer.claim = _ahead(tx, found, mark)
    else:
        # Done already (a built-in step) or nothing to do: the job ends with this transaction.
        offer.settle_pending(tx)


def _with_reconnects(write: Callable[[], None]) -> None:
    """Run ``write``, retrying while the database connection is lost (about a minute)."""
    delay = 0.05
    deadline = time.monotonic() + RECONNECT_WINDOW
    while True:
        try:
            write()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "database unavailable while recording a step outcome; retrying",
                extra={"error": type(exc).__name__, "retry_in": delay},
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            return


def _claim(
    runtime: Runtime,
    tx: Transaction,
    run_id: str,
    step: str,
    *,
    reclaim: bool,
    locked: Run | None = None,
    ahead: bool = False,
) -> _Claim | Outcome:
    """Claim ``step`` under the run's lock (``locked``: the run, already locked by ``tx``).

    ``ahead``: for a delivery still to come; the current span (another delivery's) is left alone.
    """
    run = locked if locked is not None else run_store.lock_run(tx.connection, run_id)
    if not ahead:
        trace.get_current_span().set_attribute(telemetry.WORKFLOW, run.workflow)
    if step == DEADLINE_STEP:
        return waiting.deadline_reached(runtime, tx, run)
    if run.status == "paused":
        # Only a timer of a waiting step (an approval's timeout) has work in a paused run.
        woken = waiting.wake(runtime, tx, run, StepKey.parse(step))
        if woken is not None:
            return woken
    # Closing a run that will run nothing more needs no definition: a worker that holds another
    # version of the workflow (or none of the run's steps) finishes a cancellation all the same.
    if run.status in state_machine.TERMINAL or run.status == "paused":
        if run.status != "paused":
            _close_left_running(runtime, tx, run, step, reclaim=reclaim)
        tx.events.append(StepSkipped(run, step, f"run_{run.status}"))
        return "skipped"
    if run.status == "cancelling":
        _close_left_running(runtime, tx, run, step, reclaim=reclaim)
        if run_store.running_steps(tx.connection, run.id):
            # A body is still in flight: its own outcome (or its takeover) finishes the cancel.
            tx.events.append(StepSkipped(run, step, "run_cancelling"))
            return "skipped"
        progression.finish_cancelling(tx, run)
        return "cancelled"
    definition = runtime.definition_of(run)
    key = StepKey.parse(step)
    node = definition.steps.get(key.name)
    if node is None:
        # The version held here was kept across a change that removed the step: the run needs
        # a definition this process does not have. Refused, not dropped: the job stays with its
        # queue (retried, then kept as a dead letter) and explain_run says so.
        raise errors.DefinitionUnavailable(
            run.workflow, definition.version, (definition.version,), run_id=run.id, step=step
        )
    if node.is_waiting:
        woken = waiting.wake(runtime, tx, run, key)
        if woken is not None:
            return woken
    if _starts_map(node, key):
        mapped = step_run_store.get_step_run(tx.connection, run.id, key.key)
        if mapped is not None and mapped.status == "running":
            tx.events.append(StepSkipped(run, step, "already_running"))
            return "skipped"
    step_input = _step_input(tx, run, definition, node, key)
    if step_input is None:
        tx.events.append(StepSkipped(run, step, "not_current"))
        return "skipped"
    found = _begin(
        runtime, tx, run, definition, node, key, step_input, reclaim=reclaim, ahead=ahead
    )
    assert found is not None  # noqa: S101 - only a simple claim ends without an outcome
    return found


def _begin(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    key: StepKey,
    step_input: dict[str, Any],
    *,
    reclaim: bool,
    simple: bool = False,
    ahead: bool = False,
) -> _Claim | Outcome | None:
    """Start the step run and its attempt; with ``simple``, ``None`` unless it just starts.

    ``simple`` returns before writing anything when the step run is already running or
    completed (the delivery then decides); it is always a claim ahead of the delivery.
    ``ahead``: the current span is not this delivery's, so the attempt is not set on it.
    """
    step = key.key
    # The step run and its first attempt are inserted together (one statement on PostgreSQL):
    # the attempt only if the step run is new (it has the id chosen here), otherwise below.
    step_run, action, attempt = step_run_store.begin_step_with_attempt(
        tx, run.id, step, step_input, node.recovery.to_dict(), str(new_id())
    )
    if action == "skip" and simple:
        return None  # nothing was written: a step run that exists keeps its attempts
    if action == "skip" and step_run.status == "completed":
        # Completed but the run never moved on: advance from the stored output.
        progression.advance_after_success(
            runtime, tx, run, definition, node, step_run.output or {}, key=step
        )
        return "reconciled"
    if action == "skip":
        reason = _takeover_reason(runtime, tx, step_run, reclaim=reclaim)
        if reason is None:
            tx.events.append(StepSkipped(run, step, "already_running"))
            return "skipped"
        _abandon(tx, step_run, reason)
        step_run, _ = step_run_store.begin_step(
            tx, run.id, step, step_input, node.recovery.to_dict()
        )
    if run.status in ("pending", "retrying"):
        current = key.whole.key if definition.single_path else None
        run = progression.write_run(tx, run, status="running", current_step=current)
    if attempt is None or attempt.step_run_id != step_run.id:
        attempt = attempt_store.begin_attempt(tx, step_run.id)
    if not (ahead or simple):
        trace.get_current_span().set_attribute(telemetry.ATTEMPT, attempt.number)
    tx.events.append(StepStarted(run, step, attempt.number))
    claim = _Claim(run, definition, node, step_run, attempt)
    if node.kind == "log":
        _log(tx, claim)
        _apply(runtime, tx, claim, _Outcome(output={}))
        return "executed"
    if node.kind == "child":
        waits = children.begin(runtime, tx, run, definition, node, step_run, attempt)
        return "waiting" if waits else "executed"
    if node.kind == "signal":
        received = signals.begin(runtime, tx, run, node, step_run, attempt)
        if received is None:
            return "waiting"
        _apply(runtime, tx, claim, _Outcome(output=received))
        return "executed"
    if node.is_waiting:
        started = waiting.begin(runtime, tx, run, definition, node, step_run, attempt)
        if started == "completed":
            _apply(runtime, tx, claim, _Outcome(output={}))
            return "executed"
        return "executed" if started == "failed" else started
    if _starts_map(node, key):
        return mapping.start(runtime, tx, run, definition, node, step_run, attempt)
    return claim


def _starts_map(node: StepNode, key: StepKey) -> bool:
    """Whether claiming ``key`` starts a map step (its elements are claimed one by one)."""
    return node.map_over is not None and key.item is None


def _takeover_reason(
    runtime: Runtime, tx: Transaction, step_run: StepRun, *, reclaim: bool
) -> dict[str, Any] | None:
    """Why a step still marked running may be taken over, or ``None`` when it may not."""
    if reclaim:
        return error_records.error_record(
            "abandoned",
            "step attempt abandoned: the worker running it stopped",
            code="worker_lost",
            retryable=True,
            step=step_run.step,
        )
    timeout = runtime.stale_step_timeout
    if timeout is not None and (tx.now - step_run.updated_at).total_seconds() >= timeout:
        return error_records.error_record(
            "abandoned",
            "step attempt reclaimed after exceeding the stale running timeout",
            code="stale_running_step",
            retryable=True,
            step=step_run.step,
            details={"stale_step_timeout": timeout},
        )
    return None


def _close_left_running(
    runtime: Runtime, tx: Transaction, run: Run, step: str, *, reclaim: bool
) -> None:
    """Close ``step`` of a run that will run nothing more, if a dead delivery left it running.

    The run is cancelling or finished, so the step is not taken over: its attempt is recorded
    as ``abandoned`` (with the takeover reason) and its step run as ``failed`` (with the
    cancellation error when the run is being cancelled). A step that may still be running
    somewhere (no takeover reason) is left alone: its outcome closes it.
    """
    step_run = step_run_store.get_step_run(tx.connection, run.id, step)
    if step_run is None or step_run.status != "running":
        return
    reason = _takeover_reason(runtime, tx, step_run, reclaim=reclaim)
    if reason is None:
        return
    cancelled = run.status in ("cancelling", "cancelled")
    error = run_store.ABANDONED_CANCELLATION_ERROR if cancelled else reason
    latest = attempt_store.latest_attempt(tx.connection, step_run.id)
    if latest is not None and latest.status == "running":
        attempt_store.abandon_attempt(tx, latest.id, reason)
        duration = tx.now - latest.inserted_at
        tx.events.append(StepFailed(run, step, latest.number, duration, error))
    step_run_store.fail_step(tx, step_run.id, error)


def _abandon(tx: Transaction, step_run: StepRun, reason: Mapping[str, Any]) -> None:
    latest = attempt_store.latest_attempt(tx.connection, step_run.id)
    if latest is not None and latest.status == "running":
        attempt_store.abandon_attempt(tx, latest.id, reason)
    step_run_store.fail_step(tx, step_run.id, reason)


def _step_input(
    tx: Transaction, run: Run, definition: WorkflowDefinition, node: StepNode, key: StepKey
) -> dict[str, Any] | None:
    """The input to claim the step with, or ``None`` when this delivery is not current."""
    if definition.single_path and key.item is None:
        if run.current_step != key.key:
            return None
        return inputs.snapshot(node, inputs.state(run))
    # Steps of a graph with several paths run only once scheduled, with the snapshot taken
    # then (also on retry).
    existing = step_run_store.get_step_run(tx.connection, run.id, key.key)
    if existing is None or existing.status not in ("pending", "failed"):
        return None
    return dict(existing.input)


def _log(tx: Transaction, claim: _Claim) -> None:
    node = claim.node
    level = logging.getLevelNamesMapping()[str(node.options.get("level", "info")).upper()]
    message = str(node.options["message"])
    extra = {
        "run_id": claim.run.id,
        "workflow": claim.run.workflow,
        "step": claim.step_run.step,
        "attempt": claim.attempt.number,
    }
    tx.after_commit(lambda: step_logger.log(level, message, extra=extra))


def _invoke(runtime: Runtime, claim: _Claim, tx: Transaction | None) -> _Outcome:
    node = claim.node
    body = node.body
    assert body is not None  # noqa: S101 - function steps always have a body
    run = claim.run
    context = StepContext(
        run_id=run.id,
        workflow=run.workflow,
        step=node.name,
        attempt=claim.attempt.number,
        trigger=run.trigger,
        payload=run.payload,
        schedule=run.schedule,
        connection=tx.connection if tx is not None else None,
        logger=StepLogger(
            step_logger,
            {
                "run_id": run.id,
                "workflow": run.workflow,
                "step": node.name,
                "attempt": claim.attempt.number,
            },
        ),
    )
    try:
        if tx is None:
            result = call_body(body, claim.step_run.input, context, timeout=node.timeout)
            return _result(node, result)
        # The step's writes live in a savepoint: a failure rolls back only them, and the
        # failure itself is still recorded in the surrounding transaction.
        with tx.connection.begin_nested():
            result = call_body(body, claim.step_run.input, context, timeout=node.timeout)
            return _result(node, result)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is the step's result
        return _Outcome(exception=exc)


def _result(node: StepNode, result: object) -> _Outcome:
    """A body's return value as an outcome: its output, and its branch label if it gave one.

    Raises:
        StepOutputError: the output cannot be stored, or the label is not an identifier.
    """
    if isinstance(result, Branch):
        if not isinstance(result.label, str) or not result.label.isidentifier():
            raise errors.StepOutputError(
                node.name, f"returned Branch({result.label!r}): a label is an identifier"
            )
        return _Outcome(
            output=inputs.normalize_output(node.name, result.output), label=result.label
        )
    return _Outcome(output=inputs.normalize_output(node.name, result))


def _apply(runtime: Runtime, tx: Transaction, claim: _Claim, outcome: _Outcome) -> Run:
    """Record the attempt's outcome and move the run on; return the run as it is left."""
    node = claim.node
    duration = tx.now - claim.attempt.inserted_at
    if outcome.exception is not None:
        run = run_store.relock_run(tx.connection, claim.run)
    try:
        if outcome.exception is None:
            assert outcome.output is not None  # noqa: S101
            element = StepKey.parse(claim.step_run.step)
            # A map element keeps its own output; the map step stores the list under its key.
            output = (
                dict(outcome.output)
                if element.item is not None
                else inputs.namespaced(node, outcome.output)
            )
            # Whatever the run's state, the attempt and step run complete: on PostgreSQL in
            # one statement with the run's lock (still taken first).
            run = run_store.relock_and_complete(
                tx, claim.run, claim.attempt.id, claim.step_run.id, output
            )
            key = claim.step_run.step
            tx.events.append(StepCompleted(run, key, claim.attempt.number, duration))
            if element.item is not None:
                finished = mapping.element_finished(
                    runtime, tx, run, claim.definition, node, element
                )
                prepared.flush(tx.connection)
                return finished
            # Not flushed here: relock_and_complete found a stale attempt or step run already,
            # and the run's write (and its next job) travel with the next step's claim.
            return progression.advance_after_success(
                runtime,
                tx,
                run,
                claim.definition,
                node,
                output,
                key=key,
                label=outcome.label,
                returned=outcome.output,
            )
        exc = outcome.exception
        telemetry.fail(trace.get_current_span(), exc)
        error = describe_error(exc, step=node.name)
        attempt_store.fail_attempt(tx, claim.attempt.id, error)
        step_run = step_run_store.fail_step(tx, claim.step_run.id, error)
    except errors.StaleRecord as stale:
        raise _Stale from stale
    tx.events.append(StepFailed(run, claim.step_run.step, claim.attempt.number, duration, error))
    failures = attempt_store.failed_attempt_count(tx.connection, claim.step_run.id)
    decision = retry_decision(node, failures, exc)
    element = StepKey.parse(step_run.step)
    if element.item is not None and not decision.retry:
        return mapping.element_failed(runtime, tx, run, claim.definition, node, element, error)
    return progression.advance_after_failure(
        runtime,
        tx,
        run,
        claim.definition,
        node,
        step_run,
        claim.attempt.number,
        error,
        decision,
    )
