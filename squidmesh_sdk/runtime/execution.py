"""Executing one delivered step: claim it, run the body, record the result and move on.

Two transactions per step. The *claim* (:mod:`~squidmesh_sdk.runtime.claiming`) locks the run
row, checks that the delivery is current, marks the step run ``running`` and opens attempt n.
The body then runs outside any transaction (unless the step asked for one). The *record*
(:mod:`~squidmesh_sdk.runtime.recording`) locks the run again, records the result on the
attempt and step run, and routes the run, dispatching the next work in the same commit. When
that work is the same run's next step for this same worker (a continuation), its claim is made
in that commit too: a chained step costs one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.trace import SpanKind
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError

from squidmesh_sdk import errors, telemetry
from squidmesh_sdk.definition.context import StepContext, StepLogger
from squidmesh_sdk.definition.outcomes import Branch
from squidmesh_sdk.graph import StepKey, StepNode
from squidmesh_sdk.port.continuation import NextJobNotClaimed, current_continuation
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import claiming, group_commit, inputs
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.invoke import call_body
from squidmesh_sdk.runtime.recording import Claim, Outcome, StaleResult, StepResult, record_result
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["Outcome", "execute_step"]

logger = logging.getLogger("squidmesh_sdk.runtime")
step_logger = logging.getLogger("squidmesh_sdk.step")

RECONNECT_WINDOW = 60.0
"""Seconds an outcome write keeps retrying while the database is unreachable."""


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
    ahead = delivery.claim
    if not (isinstance(ahead, Claim) and ahead.run.id == run_id and ahead.step_run.step == step):
        ahead = None
    # Links and attributes are for a span that records: none does without a tracer provider
    # (the span then only carries the run's context), so they are not even made.
    recording = telemetry.tracing()
    with telemetry.span(
        f"process {step}",
        kind=SpanKind.CONSUMER,
        parent=carrier.get("run"),
        links=telemetry.link_to(carrier.get("send")) if recording else (),
        attributes=_process_attributes(run_id, step, delivery, ahead) if recording else None,
    ) as span:
        outcome = _execute(runtime, run_id, step, delivery, ahead)
        span.set_attribute(telemetry.OUTCOME, outcome)
        return outcome


def _process_attributes(
    run_id: str, step: str, delivery: Delivery, ahead: Claim | None
) -> dict[str, Any]:
    """A ``process`` span's attributes.

    A step claimed ahead has its workflow and attempt from the start; for any other, they are
    added once the claim read the run (each attribute set on a started span costs the SDK a
    lock and a check of its own). The finished spans are alike; only a sampler, which sees
    the attributes a span starts with, could tell the two apart.
    """
    attributes = {
        telemetry.RUN_ID: run_id,
        telemetry.STEP: step,
        **telemetry.consumer_attributes(delivery.queue, delivery.message_id),
    }
    if ahead is not None:
        attributes[telemetry.WORKFLOW] = ahead.run.workflow
        attributes[telemetry.ATTEMPT] = ahead.attempt.number
    return attributes


def _execute(
    runtime: Runtime, run_id: str, step: str, delivery: Delivery, ahead: Claim | None
) -> Outcome:
    if ahead is not None:
        # Claimed by the transaction that leased the job, that started the run, or that
        # finished the previous step (a worker continuation); its workflow and attempt are
        # already on the span.
        claimed = ahead
        runtime.emit(claimed.events)  # committed with the claim; reported in this span
    else:
        with runtime.transaction() as tx:
            found = claiming.claim(runtime, tx, run_id, step, reclaim=delivery.reclaim)
            if not isinstance(found, Claim):
                delivery.settle_in(tx)
                return found
        claimed = found
    try:
        try:
            if claimed.node.transaction:
                with runtime.transaction() as tx:
                    result = _invoke(runtime, claimed, tx)
                    record_result(runtime, tx, claimed, result)
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
    except StaleResult:
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


def _refused(claim: Claim, exc: StatementError) -> StepResult:
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
    return StepResult(exception=refused)


def _apply_and_settle(
    runtime: Runtime, claim: Claim, result: StepResult, delivery: Delivery
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
    runtime: Runtime, tx: Transaction, claim: Claim, result: StepResult, delivery: Delivery
) -> None:
    run = record_result(runtime, tx, claim, result)
    delivery.settle_in(tx)
    _claim_ahead(runtime, tx, run)


def _claim_ahead(runtime: Runtime, tx: Transaction, run: Run) -> None:
    """Claim the step this transaction handed to the same worker, in this transaction.

    The worker performs that job next; claiming its step now saves the step a transaction of
    its own. A step of the same run: the next step this transaction queued, or, when it
    queued none, a step of a graph with several paths already queued (a fan-out's branch
    waiting for a worker). Failing those, the worker's next job is claimed here (see
    :meth:`~squidmesh_sdk.port.continuation.Continuation.take_next_job`). ``run`` is the run
    as this transaction left it, still locked: it is not read again.
    """
    offer = current_continuation()
    if offer is None:
        return
    definition = runtime.definition_of(run)
    step = offer.step_to_claim(tx, run.id)
    if step is None and run.status == "running" and not definition.single_path:
        step = offer.lease_next_of_run(tx, run.id)
    if step is None:
        # Nothing of this run for the worker: its next job, claimed here rather than in a
        # transaction of its own once this delivery ends.
        offer.take_next_job(tx)
        return
    key = StepKey.parse(step)
    node = definition.steps.get(key.name)
    if node is None or node.is_builtin or claiming.starts_map(node, key):
        # A built-in step is done by its claim: left to its own delivery, it gets its own
        # ``process`` span, and its transitions (``running -> paused``) are events on it.
        return
    mark = len(tx.events)
    found = claiming.claim(runtime, tx, run.id, step, reclaim=False, locked=run, ahead=True)
    if isinstance(found, Claim):
        offer.claim = claiming.ahead(tx, found, mark)
    else:
        # Done already (a built-in step) or nothing to do: the job ends with this transaction.
        offer.settle_pending(tx)


def _with_reconnects(write: Callable[[], None]) -> None:
    """Run ``write``, retrying while the database connection is lost (about a minute).

    An outcome whose transaction failed to claim the worker's next job is written again at
    once, without that claim.
    """
    delay = 0.05
    deadline = time.monotonic() + RECONNECT_WINDOW
    while True:
        try:
            write()
        except NextJobNotClaimed as exc:
            logger.warning(
                "claiming the worker's next job with a step outcome failed; the outcome is "
                "written again without it (a failure of the outcome's own shows again then)",
                exc_info=exc.__cause__,
            )
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


def _invoke(runtime: Runtime, claim: Claim, tx: Transaction | None) -> StepResult:
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
    except (Exception, SystemExit, asyncio.CancelledError) as exc:  # noqa: BLE001 - user code
        # ``sys.exit()`` in a body (a command-line tool's ``main()`` called by a step), or a
        # task it awaits cancelled, is the step's failure too: let through, it ended the
        # delivery without a word, and the job's rescues ran the body again and again (the
        # inline executor: it ended the program that started the run).
        return StepResult(exception=exc)


def _result(node: StepNode, result: object) -> StepResult:
    """A body's return value as an outcome: its output, and its branch label if it gave one.

    Raises:
        StepOutputError: the output cannot be stored, or the label is not an identifier.
    """
    if isinstance(result, Branch):
        if not isinstance(result.label, str) or not result.label.isidentifier():
            raise errors.StepOutputError(
                node.name, f"returned Branch({result.label!r}): a label is an identifier"
            )
        return StepResult(
            output=inputs.normalize_output(node.name, result.output), label=result.label
        )
    return StepResult(output=inputs.normalize_output(node.name, result))
