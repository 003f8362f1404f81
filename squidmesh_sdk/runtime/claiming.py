"""Claiming a delivered step under its run's lock: is it current, and may it start?

A claim locks the run row, checks that the delivery is current (the run still runs, the step
is the one due, nobody else runs it), and starts the step run and its attempt. Redelivery is
harmless: a job for a step that is not current, for a paused or finished run, or for a step
another delivery is running does nothing; a job for a step that completed but whose run was
not moved on moves the run on from the stored output without running the step again. A step
left running by a worker that died is taken over (its attempt ``abandoned``). Built-in steps
(log, wait, pause, approval, signal, child, the start of a map) are done by their claim.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from sqlalchemy.exc import SQLAlchemyError

from squidmesh_sdk import error_records, errors, state_machine, telemetry
from squidmesh_sdk.frozen import evolve
from squidmesh_sdk.graph import DEADLINE_STEP, StepKey, StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import children, inputs, mapping, progression, signals, waiting
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import StepFailed, StepSkipped, StepStarted
from squidmesh_sdk.runtime.recording import Claim, Outcome, StepResult, record_result
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import run_reads, step_run_reads
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store import step_starts as step_start_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import new_id_text
from squidmesh_sdk.store.records import Attempt, Run, StepRun

__all__ = ["ahead", "begin", "claim", "claim_step", "starts_map"]

step_logger = logging.getLogger("squidmesh_sdk.step")


def claim_step(
    runtime: Runtime, tx: Transaction, run_id: str, step: str, *, created: Run | None = None
) -> object | None:
    """Claim ``step`` in ``tx``, a transaction that leases its job, for the delivery to follow.

    A worker claiming a job this way saves the step a transaction of its own; the claim goes
    to the delivery as ``Delivery(claim=...)``. Only a step that simply starts is claimed:
    whenever the delivery has something else to decide (the run is finished, paused or
    cancelling, the step is a built-in or manual one, not current, already running...),
    ``None`` is returned before anything is written or reported, so the delivery does exactly
    what it would have done.

    The run's lock is not waited for (``None`` when another transaction holds it): ``tx``
    holds job rows, flow-control locks, maybe another run's lock, and a transaction holding
    the run could be waiting for one of those. The delivery claims the step then, holding
    nothing else.

    ``created``: the run, when ``tx`` itself inserted it (a start). No other transaction can
    see it, let alone hold it, and ``tx`` wrote nothing to it since: it is not read again.

    Raises:
        SQLAlchemyError: a statement failed; ``tx`` must be rolled back (any other error of
            the decision gives ``None``: the delivery meets it again and reports it).
    """
    try:
        locked = created or run_reads.lock_run_unless_locked(tx.connection, run_id)
        if locked is None:
            return None
        run = locked
        definition = runtime.definition_of(run)
        key = StepKey.parse(step)
        node = definition.steps.get(key.name)
        if run.status not in ("pending", "running", "retrying") or node is None:
            return None
        if node.is_builtin or starts_map(node, key):
            return None
        scheduled = _runs_once_scheduled(definition, key)
        step_input = None if scheduled else _current_input(run, definition, node, key)
        if not scheduled and step_input is None:
            return None
    except SQLAlchemyError:
        # Not the step's problem but the transaction's: on PostgreSQL it is aborted, and a
        # COMMIT would roll back without a word what it wrote before (a step's outcome, when
        # this claim rides with one). Its caller rolls it back and goes on without the claim.
        raise
    except Exception:  # noqa: BLE001 - nothing written yet: the delivery decides, and reports
        return None
    # From here on only what the delivery itself would do once it found the step startable.
    mark = len(tx.events)
    if scheduled:
        started = step_start_store.start_scheduled(tx, run.id, key.key, node.recovery.to_dict())
        if started is None:
            return None
        found = begin(runtime, tx, run, definition, node, key, None, reclaim=False, begun=started)
    else:
        found = begin(
            runtime, tx, run, definition, node, key, step_input, reclaim=False, simple=True
        )
    return ahead(tx, found, mark) if isinstance(found, Claim) else None


def ahead(tx: Transaction, claim: Claim, mark: int) -> Claim:
    """``claim``, made ahead of its delivery, holding the events it added to ``tx``.

    Those since ``mark``: the delivery reports them in its own span, not the current one.
    """
    events = tuple(tx.events[mark:])
    del tx.events[mark:]
    return evolve(claim, events=events)


def claim(
    runtime: Runtime,
    tx: Transaction,
    run_id: str,
    step: str,
    *,
    reclaim: bool,
    locked: Run | None = None,
    ahead: bool = False,
) -> Claim | Outcome:
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
        if run_reads.running_steps(tx.connection, run.id):
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
    if starts_map(node, key):
        mapped = step_run_reads.get_step_run(tx.connection, run.id, key.key)
        if mapped is not None and mapped.status == "running":
            tx.events.append(StepSkipped(run, step, "already_running"))
            return "skipped"
    if _runs_once_scheduled(definition, key):
        started = step_start_store.start_scheduled(tx, run.id, key.key, node.recovery.to_dict())
        if started is None:
            tx.events.append(StepSkipped(run, step, "not_current"))
            return "skipped"
        found = begin(
            runtime,
            tx,
            run,
            definition,
            node,
            key,
            None,
            reclaim=reclaim,
            ahead=ahead,
            begun=started,
        )
    else:
        step_input = _current_input(run, definition, node, key)
        if step_input is None:
            tx.events.append(StepSkipped(run, step, "not_current"))
            return "skipped"
        found = begin(
            runtime, tx, run, definition, node, key, step_input, reclaim=reclaim, ahead=ahead
        )
    assert found is not None  # noqa: S101 - only a simple claim ends without an outcome
    return found


def begin(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    key: StepKey,
    step_input: dict[str, Any] | None,
    *,
    reclaim: bool,
    simple: bool = False,
    ahead: bool = False,
    begun: tuple[StepRun, Attempt] | None = None,
) -> Claim | Outcome | None:
    """Start the step run and its attempt; with ``simple``, ``None`` unless it just starts.

    ``simple`` returns before writing anything when the step run is already running or
    completed (the delivery then decides); it is always a claim ahead of the delivery.
    ``ahead``: the current span is not this delivery's, so the attempt is not set on it.
    ``begun``: the step run and attempt, already started (a scheduled step run claimed by
    :func:`~squidmesh_sdk.store.step_starts.start_scheduled`); else ``step_input`` is given.
    """
    step = key.key
    attempt: Attempt | None
    if begun is not None:
        step_run, attempt = begun
        action = "execute"
        snapshot: Mapping[str, Any] = step_run.input
    else:
        assert step_input is not None  # noqa: S101 - one of the two is given
        snapshot = step_input
        # The step run begins with its next attempt (one statement on PostgreSQL).
        step_run, action, attempt = step_start_store.begin_step_with_attempt(
            tx, run.id, step, snapshot, node.recovery.to_dict(), new_id_text()
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
        step_run, _ = step_start_store.begin_step(
            tx, run.id, step, snapshot, node.recovery.to_dict()
        )
    if run.status in ("pending", "retrying"):
        current = key.whole.key if definition.single_path else None
        run = progression.write_run(tx, run, status="running", current_step=current)
    if attempt is None:  # a step run taken over: begun again above, without an attempt
        attempt = attempt_store.begin_attempt(tx, step_run.id)
    if not (ahead or simple):
        trace.get_current_span().set_attribute(telemetry.ATTEMPT, attempt.number)
    tx.events.append(StepStarted(run, step, attempt.number))
    started = Claim(run, definition, node, step_run, attempt)
    if node.kind == "log":
        _log(tx, started)
        record_result(runtime, tx, started, StepResult(output={}))
        return "executed"
    if node.kind == "child":
        child_waits = children.begin(runtime, tx, run, definition, node, step_run, attempt)
        return "waiting" if child_waits else "executed"
    if node.kind == "signal":
        received = signals.begin(runtime, tx, run, node, step_run, attempt)
        if received is None:
            return "waiting"
        record_result(runtime, tx, started, StepResult(output=received))
        return "executed"
    if node.is_waiting:
        waits = waiting.begin(runtime, tx, run, definition, node, step_run, attempt)
        if waits == "completed":
            record_result(runtime, tx, started, StepResult(output={}))
            return "executed"
        return "executed" if waits == "failed" else waits
    if starts_map(node, key):
        return mapping.start(runtime, tx, run, definition, node, step_run, attempt)
    return started


def starts_map(node: StepNode, key: StepKey) -> bool:
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
    step_run = step_run_reads.get_step_run(tx.connection, run.id, step)
    if step_run is None or step_run.status != "running":
        return
    reason = _takeover_reason(runtime, tx, step_run, reclaim=reclaim)
    if reason is None:
        return
    cancelled = run.status in ("cancelling", "cancelled")
    error = run_store.ABANDONED_CANCELLATION_ERROR if cancelled else reason
    latest = attempt_store.latest_attempt(tx.connection, step_run.id)
    if latest is not None and latest.status == "running":
        attempt_store.abandon_attempt(tx, latest, reason)
        duration = tx.now - latest.inserted_at
        tx.events.append(StepFailed(run, step, latest.number, duration, error))
    step_run_store.fail_step(tx, step_run.id, error)


def _abandon(tx: Transaction, step_run: StepRun, reason: Mapping[str, Any]) -> None:
    latest = attempt_store.latest_attempt(tx.connection, step_run.id)
    if latest is not None and latest.status == "running":
        attempt_store.abandon_attempt(tx, latest, reason)
    step_run_store.fail_step(tx, step_run.id, reason)


def _runs_once_scheduled(definition: WorkflowDefinition, key: StepKey) -> bool:
    """Whether ``key`` runs only once scheduled, with the input snapshot taken then.

    So are the steps of a graph with several paths and a map's elements (also on retry): they
    start from their ``pending`` (or ``failed``) step run, and are not current without one.
    """
    return not definition.single_path or key.item is not None


def _current_input(
    run: Run, definition: WorkflowDefinition, node: StepNode, key: StepKey
) -> dict[str, Any] | None:
    """The input of a single-path step, or ``None`` when this delivery is not current."""
    if run.current_step != key.key:
        return None
    return inputs.snapshot(node, inputs.state(run))


def _log(tx: Transaction, claim: Claim) -> None:
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
