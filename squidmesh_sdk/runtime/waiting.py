"""Steps that wait: timers, pauses and approvals, their timeouts, and run deadlines.

Signal and child steps wait too (:mod:`~squidmesh_sdk.runtime.signals`,
:mod:`~squidmesh_sdk.runtime.children`); their timeouts are handled here like an approval's.

A waiting step's step run stays ``running`` with ``resume`` saying what it waits for (``kind``)
and until when; no body runs. Every timer is a job of the run's executor, due at the time: the
job of a wait step completes it, the job of an approval or pause with a timeout takes its
``timeout`` route, and a run's deadline job fails the run. A timer job that comes early (a
duplicate delivery) or late (the step was decided meanwhile) does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from opentelemetry import trace

from squidmesh_sdk import error_records, telemetry
from squidmesh_sdk.definition.conditions import resolve_path
from squidmesh_sdk.graph import DEADLINE_STEP, StepKey, StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import children, dispatcher, inputs, progression
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import StepCompleted, StepSkipped
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import audit, step_run_reads
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Attempt, Run, StepRun

__all__ = ["begin", "deadline_reached", "wake"]

Begun = Literal["completed", "failed", "waiting", "paused"]
Woken = Literal["executed", "skipped"]


def begin(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    step_run: StepRun,
    attempt: Attempt,
) -> Begun:
    """Start waiting at ``node`` (its step run and attempt were just opened).

    Returns:
        ``"completed"``: a wait whose time has already come (the caller completes it);
        ``"failed"``: a wait whose time could not be read (failed and moved on here);
        ``"waiting"``: a timer is queued; ``"paused"``: a pause or approval waits for a person.
    """
    if node.kind == "wait":
        due = _wait_until(node, run, tx.now)
        if isinstance(due, str):
            error = error_records.error_record(
                "invalid_wait", due, code="invalid_wait", retryable=False, step=node.name
            )
            progression.fail_open_step(runtime, tx, run, definition, node, step_run, attempt, error)
            return "failed"
        if due <= tx.now:
            return "completed"
        step_run_store.persist_waiting(tx, step_run.id, {"kind": "wait", "until": due.isoformat()})
        _set_timer(runtime, tx, run, step_run.step, due)
        return "waiting"
    resume: dict[str, Any] = {"kind": node.kind, "output_key": node.output_key}
    if node.timeout is not None:
        timeout_at = tx.now + timedelta(seconds=node.timeout)
        resume["timeout_at"] = timeout_at.isoformat()
        _set_timer(runtime, tx, run, step_run.step, timeout_at)
    step_run_store.persist_waiting(tx, step_run.id, resume)
    audit.record_event(tx, run.id, "paused", step=step_run.step)
    if definition.single_path:
        progression.write_run(tx, run, status="paused", current_step=step_run.step, last_error=None)
    else:
        progression.settle(runtime, tx, run, definition)
    return "paused"


def wake(runtime: Runtime, tx: Transaction, run: Run, key: StepKey) -> Woken | None:
    """Handle a timer job of waiting step ``key``; ``None`` when it is not one.

    Returns:
        ``"executed"`` when the timer ended the wait, ``"skipped"`` when it is not due yet.
    """
    definition = runtime.definition_of(run)
    node = definition.steps.get(key.name)
    if node is None or not node.is_waiting:
        return None
    step_run = step_run_reads.get_step_run(tx.connection, run.id, key.key)
    resume = (step_run.resume or {}) if step_run is not None else {}
    if step_run is None or step_run.status != "running" or resume.get("kind") != node.kind:
        return None
    attempt = attempt_store.latest_attempt(tx.connection, step_run.id)
    if attempt is None or attempt.status != "running":
        return None
    trace.get_current_span().set_attribute(telemetry.ATTEMPT, attempt.number)
    if node.kind == "child" and children.finish_wait(
        runtime, tx, run, definition, node, step_run, attempt
    ):
        return "executed"
    due_text = resume.get("until") if node.kind == "wait" else resume.get("timeout_at")
    if not isinstance(due_text, str) or datetime.fromisoformat(due_text) > tx.now:
        tx.events.append(StepSkipped(run, key.key, "not_due"))
        return "skipped"
    if node.kind == "wait":
        attempt_store.complete_attempt(tx, attempt)
        output = inputs.namespaced(node, {})
        step_run_store.complete_step(tx, step_run.id, output)
        tx.events.append(StepCompleted(run, key.key, attempt.number, tx.now - attempt.inserted_at))
        progression.advance_after_success(runtime, tx, run, definition, node, output, key=key.key)
        return "executed"
    if node.kind == "child":
        children.cancel_child(runtime, tx, step_run, f"step {key.key} of its parent timed out")
    what = _TIMED_OUT.get(node.kind, "was not decided")
    error = error_records.error_record(
        "timeout",
        f"{node.kind} {node.name!r} {what} within {node.timeout:g}s",
        code=f"{node.kind}_timed_out",
        retryable=False,
        step=node.name,
        details={"timeout": node.timeout, "timeout_at": due_text},
    )
    audit.record_event(tx, run.id, "timed_out", step=key.key, metadata={"timeout": node.timeout})
    progression.fail_open_step(
        runtime, tx, run, definition, node, step_run, attempt, error, outcome="timeout"
    )
    return "executed"


_TIMED_OUT = {"signal": "received no signal", "child": "saw no end of its child run"}
"""How a timed-out step's error reads (a pause or an approval "was not decided")."""


def deadline_reached(runtime: Runtime, tx: Transaction, run: Run) -> Woken:
    """Fail a run still unfinished at its deadline (its job is due); else do nothing."""
    if run.terminal or run.status == "cancelling":
        tx.events.append(StepSkipped(run, DEADLINE_STEP, f"run_{run.status}"))
        return "skipped"
    definition = runtime.definition_of(run)
    deadline = definition.deadline or 0.0
    if tx.now < run.inserted_at + timedelta(seconds=deadline):
        tx.events.append(StepSkipped(run, DEADLINE_STEP, "not_due"))
        return "skipped"
    error = error_records.error_record(
        "deadline_exceeded",
        f"run did not finish within its deadline of {deadline:g}s",
        code="deadline_exceeded",
        retryable=False,
        details={"deadline": deadline, "started_at": run.inserted_at.isoformat()},
    )
    for state in step_run_reads.progress_states(tx.connection, run.id):
        if state.waiting:
            step_run = step_run_reads.get_step_run(tx.connection, run.id, state.key)
            attempt = attempt_store.latest_attempt(tx.connection, step_run.id) if step_run else None
            if step_run is not None and attempt is not None and attempt.status == "running":
                progression.close_open_step(tx, run, step_run, attempt, error)
    audit.record_event(tx, run.id, "deadline_exceeded", metadata={"deadline": deadline})
    progression.fail_run(runtime, tx, run, error, current_step=run.current_step)
    return "executed"


def _wait_until(node: StepNode, run: Run, now: datetime) -> datetime | str:
    """When a wait step ends, or what is wrong with the value it reads."""
    try:
        return _read_wait(node, run, now)
    except OverflowError:
        # A duration read from the run (a payload's) so long that the end is past the year
        # 9999: the step fails with what is wrong, instead of the transaction that started it.
        return f"wait step {node.name!r}: the wait would end after the year 9999"


def _read_wait(node: StepNode, run: Run, now: datetime) -> datetime | str:
    options: Mapping[str, Any] = node.options
    if options.get("duration") is not None:
        return now + timedelta(seconds=float(options["duration"]))
    state = inputs.state(run)
    if options.get("duration_from") is not None:
        path = str(options["duration_from"])
        found, value = resolve_path(state, path)
        if not found:
            return f"wait step {node.name!r}: duration_from {path!r} is not in the run state"
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return (
                f"wait step {node.name!r}: duration_from {path!r} must be a number of seconds "
                f">= 0, got {value!r}"
            )
        return now + timedelta(seconds=float(value))
    path = str(options.get("until_from"))
    found, value = resolve_path(state, path)
    if not found:
        return f"wait step {node.name!r}: until_from {path!r} is not in the run state"
    try:
        until = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        until = None
    if until is None or until.tzinfo is None:
        return (
            f"wait step {node.name!r}: until_from {path!r} must be an ISO 8601 datetime with "
            f"a time zone, got {value!r}"
        )
    return until


def _set_timer(runtime: Runtime, tx: Transaction, run: Run, key: str, due: datetime) -> None:
    # A refusal (DispatchFailed) rolls the claim's transaction back: the delivery is retried.
    delay = max((due - tx.now).total_seconds(), 0.0)
    dispatcher.dispatch_steps(runtime, tx, run, [key], schedule_in=delay)
