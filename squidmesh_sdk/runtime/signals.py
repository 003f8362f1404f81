"""Signals: ``Client.signal`` delivers one; a ``signal`` step waits for it.

A signal is stored (``squidmesh_signals``) in the transaction that receives it, with the run
locked. If a step of the run waits for a signal of that name, the same transaction consumes
it: the step completes with the payload as its output and the run moves on (as
``approve_run`` does). Otherwise the signal stays ``pending`` (buffered) and the next step
that starts waiting for that name consumes it as it starts, in the transaction of its claim.
Signals of one name are consumed oldest first, one per wait. Either way a signal is consumed
exactly when a committed transaction says so: a worker that dies between the send and the
consumption leaves the signal pending and the step's job queued, and the next delivery
consumes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from squidmesh_sdk import errors, telemetry
from squidmesh_sdk.graph import StepKey, StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import dispatcher, progression
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import StepCompleted
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import audit, run_reads, step_run_reads
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import signals as signal_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Attempt, Run, Signal, StepRun

__all__ = ["begin", "send"]

_MAX_KEY = 200
"""The longest idempotency key the signals table holds."""


def send(
    runtime: Runtime,
    run_id: str,
    name: str,
    payload: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
) -> Signal:
    """Deliver signal ``name`` to run ``run_id``: consume it now, or keep it for later.

    Returns the stored signal: ``consumed`` (with the step run key that took it) or
    ``pending``. A signal already sent with ``idempotency_key`` is returned as it is now,
    with ``duplicate=True``, and nothing changes.

    Raises:
        InvalidArgument: ``name`` or ``idempotency_key`` is not a non-empty string.
        InvalidRunId, RunNotFound: no such run.
        InvalidSignal: the run is finished or cancelling (``signal_run_finished``), no step of
            its definition waits for ``name`` (``unknown_signal``), or the key delivered
            another signal (``signal_key_conflict``).
        InvalidPayload: the payload does not fit the signal's model; nothing is stored.
        DispatchFailed: the executor refused the run's next step; nothing changed.
    """
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgument("name", f"must be a non-empty string, got {name!r}")
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str)
        or not idempotency_key
        or len(idempotency_key) > _MAX_KEY
    ):
        raise errors.InvalidArgument(
            "idempotency_key",
            f"must be a non-empty string of at most {_MAX_KEY} characters, got {idempotency_key!r}",
        )
    runtime.check_schema()
    with runtime.database.read() as connection:
        found = run_reads.get_run(connection, run_id)
    with (
        telemetry.action("signal", found.workflow, found.id, found.trace_context),
        runtime.transaction() as tx,
    ):
        run = run_store.lock_run(tx.connection, run_id)
        held = None
        if idempotency_key is not None:
            held = signal_store.find_by_key(tx.connection, run.id, idempotency_key)
        if held is None and (run.terminal or run.status == "cancelling"):
            raise errors.InvalidSignal(
                run.id, name, f"the run is {run.status}", code="signal_run_finished"
            )
        definition = runtime.definition_of(run)
        node = _waiting_for(definition, name)
        if node is None or node.contract is None:
            known = sorted(
                {
                    str(n.options.get("signal"))
                    for n in definition.steps.values()
                    if n.kind == "signal"
                }
            )
            raise errors.InvalidSignal(
                run.id,
                name,
                f"no step of workflow {run.workflow!r} (version {definition.version}) waits for "
                f"it (signals it waits for: {', '.join(known) or 'none'})",
                code="unknown_signal",
            )
        validated = node.contract.validate({} if payload is None else payload)
        if held is not None:
            # A retried delivery: the same signal again is the one delivered, whatever the
            # run did since (finished, even); another signal under the key is a mistake.
            if held.name != name or held.payload != validated:
                raise errors.InvalidSignal(
                    run.id,
                    name,
                    f"idempotency key {idempotency_key!r} already delivered signal "
                    f"{held.name!r} with another payload ({held.id})",
                    code="signal_key_conflict",
                )
            return _duplicate(held)
        signal = signal_store.insert_signal(
            tx, run.id, name, validated, idempotency_key=idempotency_key
        )
        waiting = _waiting_step(tx, run, name)
        audit.record_event(
            tx,
            run.id,
            "signal_received",
            step=waiting.step if waiting is not None else None,
            metadata={
                "signal": name,
                "signal_id": signal.id,
                "idempotency_key": idempotency_key,
                "buffered": waiting is None,
            },
        )
        if waiting is None:
            return signal
        attempt = attempt_store.latest_attempt(tx.connection, waiting.id)
        if attempt is None or attempt.status != "running":
            return signal  # not open after all: the next wait consumes it
        consumed = _consume(tx, run, signal, waiting.step)
        step_node = definition.step(StepKey.parse(waiting.step).name)
        output = _output(step_node, validated)
        attempt_store.complete_attempt(tx, attempt)
        step_run_store.complete_step(tx, waiting.id, output)
        tx.events.append(
            StepCompleted(run, waiting.step, attempt.number, tx.now - attempt.inserted_at)
        )
        progression.advance_after_success(
            runtime, tx, run, definition, step_node, output, key=waiting.step, strict=True
        )
        return consumed


def begin(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    node: StepNode,
    step_run: StepRun,
    attempt: Attempt,
) -> dict[str, Any] | None:
    """Start waiting at signal step ``node`` (its step run and attempt were just opened).

    Returns:
        The payload of the oldest buffered signal of its name, now consumed: the caller
        completes the step with it. ``None``: none was buffered; the step waits (with a
        timer for its timeout, if it has one).
    """
    name = str(node.options["signal"])
    buffered = signal_store.oldest_pending(tx.connection, run.id, name)
    if buffered is not None:
        _consume(tx, run, buffered, step_run.step)
        payload = buffered.payload
        return dict(payload) if isinstance(payload, Mapping) else {}
    resume: dict[str, Any] = {"kind": "signal", "signal": name, "output_key": node.output_key}
    if node.timeout is not None:
        timeout_at = tx.now + timedelta(seconds=node.timeout)
        resume["timeout_at"] = timeout_at.isoformat()
        # A refusal (DispatchFailed) rolls the claim back: the delivery is retried.
        dispatcher.dispatch_steps(runtime, tx, run, [step_run.step], schedule_in=node.timeout)
    step_run_store.persist_waiting(tx, step_run.id, resume)
    return None


def _waiting_for(definition: WorkflowDefinition, name: str) -> StepNode | None:
    """The first signal step of ``definition`` that waits for signal ``name``."""
    return next(
        (
            node
            for node in definition.steps.values()
            if node.kind == "signal" and node.options.get("signal") == name
        ),
        None,
    )


def _waiting_step(tx: Transaction, run: Run, name: str) -> StepRun | None:
    """The oldest step run of ``run`` now waiting for signal ``name``."""
    found: list[StepRun] = []
    for state in step_run_reads.progress_states(tx.connection, run.id):
        if not state.waiting:
            continue
        step_run = step_run_reads.get_step_run(tx.connection, run.id, state.key)
        resume = (step_run.resume or {}) if step_run is not None else {}
        if step_run is not None and resume.get("kind") == "signal" and resume.get("signal") == name:
            found.append(step_run)
    return min(found, key=lambda sr: (sr.inserted_at, sr.id)) if found else None


def _consume(tx: Transaction, run: Run, signal: Signal, step: str) -> Signal:
    consumed = signal_store.consume(tx, signal, step)
    audit.record_event(
        tx,
        run.id,
        "signal_consumed",
        step=step,
        metadata={"signal": signal.name, "signal_id": signal.id},
    )
    return consumed


def _output(node: StepNode, payload: Mapping[str, Any]) -> dict[str, Any]:
    return {node.output_key: dict(payload)} if node.output_key else dict(payload)


def _duplicate(signal: Signal) -> Signal:
    return Signal(
        id=signal.id,
        run_id=signal.run_id,
        name=signal.name,
        payload=signal.payload,
        idempotency_key=signal.idempotency_key,
        status=signal.status,
        step=signal.step,
        inserted_at=signal.inserted_at,
        consumed_at=signal.consumed_at,
        duplicate=True,
    )
