"""Moving a run on after a step settled: route, activate, skip, join, retry, complete or fail.

Every function here runs inside the transaction that recorded the step's result, with the run
row locked, so the result and the work it implies commit together. A successor the executor
refuses does not undo the step's result: the run is marked failed in the same transaction.

**One graph.** A step starts when a route fires into it, or (a step with ``after=``) once its
dependencies have settled, none of them failed or was rejected (their error route was taken),
and at least one of them completed: the rule of dead-path elimination. Steps that can no
longer start (a branch not taken, a join whose dependencies were all skipped) are recorded
``skipped``; a run completes when nothing of it is pending, running or waiting. Two ways to
get there:

* a **single-path** graph (one entry step, no ``after``) has one step active at a time, named
  by ``run.current_step``: the route's target is dispatched directly, without reading the
  other step runs (the throughput path);
* any other graph reads its step runs' states and works out, to a fixed point, which steps
  start, which are skipped and whether the run is finished (:func:`settle`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from squidmesh_sdk import error_records, errors, telemetry
from squidmesh_sdk.graph import COMPLETE_TARGET, StepKey, StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import compensation, dispatcher, inputs
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RetryScheduled, RunTransitioned, StepFailed
from squidmesh_sdk.runtime.failures import RetryDecision
from squidmesh_sdk.runtime.routes import RouteChoice, choose_route
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import audit, run_reads, step_run_reads
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Attempt, Run, RunStatus, StepRun
from squidmesh_sdk.store.runs import UNSET

__all__ = [
    "advance_after_failure",
    "advance_after_success",
    "close_open_step",
    "fail_open_step",
    "fail_run",
    "finish_cancelling",
    "follow",
    "settle",
    "step_ended_while_cancelling",
    "write_run",
]

DISPATCH_FAILED = "failed to dispatch workflow step"

# A step run ``failed`` but not routed, in a run that has not failed, waits for its retry.
_ACTIVE = frozenset({"pending", "running", "waiting", "failed"})
_SETTLED = frozenset({"completed", "skipped", "routed"})


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


def step_ended_while_cancelling(
    tx: Transaction, run: Run, *, context: Mapping[str, Any] | None = None
) -> Run:
    """A step of a cancelling run ended: the run is cancelled unless another step still runs.

    That other step's own outcome, or the delivery that takes it over from a dead worker,
    finishes the cancellation.
    """
    if run_reads.running_steps(tx.connection, run.id):
        return write_run(tx, run, context=context) if context is not None else run
    return finish_cancelling(tx, run, context=context)


def advance_after_success(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    output: Mapping[str, Any],
    *,
    key: str | None = None,
    label: str | None = None,
    returned: Mapping[str, Any] | None = None,
    strict: bool = False,
) -> Run:
    """Merge a completed step's (namespaced) ``output`` and move the run on.

    ``strict``: an executor that refuses the next step raises
    :class:`~squidmesh_sdk.errors.DispatchFailed` (the caller rolls back) instead of failing
    the run.

    ``label`` is the branch the step returned (:class:`~squidmesh_sdk.Branch`), ``returned``
    its output before namespacing (what ``output.…`` conditions read). A finished run only
    records the step, and a failed one queues its compensation (the step completed after the
    run's rollback may have run); a cancelling run becomes cancelled (once no other step of it
    runs).
    """
    if run.terminal:
        if run.status == "failed":
            return compensation.dispatch_if_available(runtime, tx, run, definition)
        return run
    context = inputs.merge_output(run.context, output)
    if run.status == "cancelling":
        return step_ended_while_cancelling(tx, run, context=context)
    choice = choose_route(
        definition,
        node.name,
        label or "ok",
        output=returned if returned is not None else output,
        context=context,
        payload=run.payload,
    )
    if choice.unknown_label:
        labels = ", ".join(repr(name) for name in choice.why["labels"]) or "none"
        error = error_records.error_record(
            "unknown_branch",
            f"step {node.name!r} returned branch {label!r}, which no route names "
            f"(routes for: {labels})",
            code="unknown_branch",
            step=node.name,
            details={"label": label, "labels": choice.why["labels"]},
        )
        run = write_run(tx, run, context=context)
        return fail_run(runtime, tx, run, error, current_step=key or node.name)
    return follow(
        runtime, tx, run, definition, choice, key=key or node.name, context=context, strict=strict
    )


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
    *,
    outcome: str = "error",
) -> Run:
    """Retry the step, take its ``error`` (or ``timeout``) route, or fail the run."""
    if run.terminal:
        return run
    if run.status == "cancelling":
        return step_ended_while_cancelling(tx, run)
    key = step_run.step
    last_error = {**{k: v for k, v in error.items() if k != "traceback"}, "step": node.name}
    if decision.retry:
        # A retrying run names the step it waits to retry.
        run = write_run(tx, run, status="retrying", current_step=key, last_error=last_error)
        try:
            dispatcher.dispatch_steps(runtime, tx, run, [key], schedule_in=decision.delay or None)
        except errors.DispatchFailed as exc:
            return fail_run(
                runtime,
                tx,
                run,
                _dispatch_failed(exc, node.name, {"next_steps": [key]}, cause=last_error),
                current_step=key,
            )
        tx.events.append(RetryScheduled(run, key, attempt, decision.delay))
        return run
    choice = choose_route(definition, node.name, outcome)
    edge = choice.edge
    if edge is None:
        return fail_run(runtime, tx, run, last_error, current_step=key)
    step_run_store.record_failure_recovery(
        tx, step_run.id, strategy=edge.recovery or outcome, target=edge.target
    )
    if edge.recovery is not None:
        audit.record_event(
            tx,
            run.id,
            "compensation_routed" if edge.recovery == "compensation" else "undo_routed",
            step=node.name,
            metadata={"target": edge.target},
        )
    return follow(runtime, tx, run, definition, choice, key=key, context=None)


def close_open_step(
    tx: Transaction, run: Run, step_run: StepRun, attempt: Attempt, error: Mapping[str, Any]
) -> StepRun:
    """Fail a step run and its open attempt with ``error`` (no body of it is running)."""
    attempt_store.fail_attempt(tx, attempt, error)
    failed = step_run_store.fail_step(tx, step_run.id, error)
    duration = tx.now - attempt.inserted_at
    tx.events.append(StepFailed(run, step_run.step, attempt.number, duration, error))
    return failed


def fail_open_step(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    step_run: StepRun,
    attempt: Attempt,
    error: Mapping[str, Any],
    *,
    outcome: str = "error",
) -> Run:
    """Fail a waiting or map step for good and move on: its ``outcome`` route, or the run fails.

    For failures the runtime decides (a timeout, a wait that cannot be read, a failed map
    element), which no retry policy covers.
    """
    failed = close_open_step(tx, run, step_run, attempt, error)
    decision = RetryDecision(retry=False)
    return advance_after_failure(
        runtime, tx, run, definition, node, failed, attempt.number, error, decision, outcome=outcome
    )


def follow(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    choice: RouteChoice,
    *,
    key: str,
    context: Mapping[str, Any] | None,
    strict: bool = False,
) -> Run:
    """Take ``choice`` from step run ``key``: record why, start its target, or end the path.

    ``strict``: as for :func:`advance_after_success`.
    """
    if choice.why:
        audit.record_event(tx, run.id, "route_taken", step=key, metadata=choice.why)
        telemetry.route_taken(key, choice.outcome, choice.why.get("target"))
    target = choice.edge.target if choice.edge is not None else None
    if not definition.single_path:
        activate = [target] if target is not None and target != COMPLETE_TARGET else []
        return settle(
            runtime, tx, run, definition, context=context, activate=activate, strict=strict
        )
    if target is None or target == COMPLETE_TARGET:
        return _complete(tx, run, definition, context)
    next_key = _next_key(tx, run, definition, target)
    merged = context if context is not None else UNSET
    run = write_run(
        tx, run, status="running", context=merged, current_step=next_key, last_error=None
    )
    try:
        dispatcher.dispatch_steps(runtime, tx, run, [next_key])
    except errors.DispatchFailed as exc:
        if strict:
            raise
        return fail_run(
            runtime,
            tx,
            run,
            _dispatch_failed(exc, target, {"next_steps": [next_key]}),
            current_step=next_key,
        )
    return run


def settle(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    *,
    context: Mapping[str, Any] | None = None,
    activate: Sequence[str] = (),
    strict: bool = False,
) -> Run:
    """Work out what a run of a graph with several paths does next, and do it.

    ``activate``: steps a route just fired into (a step that already ran starts a new
    iteration). Then, until nothing changes: a join whose dependencies have all settled starts
    when none failed (or was rejected) and at least one completed, and is skipped otherwise; a
    step that nothing still active can reach is skipped. The run completes when nothing is
    pending, running or waiting; it is ``paused`` while only pauses and approvals wait; else
    it runs.
    """
    latest = _latest_states(tx, run)
    started: list[str] = []
    for target in activate:
        previous = latest.get(target)
        key = StepKey(target, previous[0].iteration + 1 if previous else 1)
        latest[target] = (key, "pending")
        started.append(key.key)
    skipped: list[str] = []
    # One pass in graph order decides every step: a step's fate depends on its dependencies
    # (earlier in the order) and on what active steps can still reach, which only grows, with
    # the steps this pass starts, toward later steps (a join never sits in a loop).
    live = _downstream(definition, {n for n, (_, status) in latest.items() if status in _ACTIVE})
    for node in definition.ordered_steps:
        if node.name in latest:
            continue
        if node.depends_on:
            deps = [latest.get(dep) for dep in node.depends_on]
            if not all(dep is not None and dep[1] in _SETTLED for dep in deps):
                continue  # a dependency still runs, or may still start
            routed = any(dep is not None and dep[1] == "routed" for dep in deps)
            if not routed and any(dep is not None and dep[1] == "completed" for dep in deps):
                latest[node.name] = (StepKey(node.name), "pending")
                started.append(node.name)
                live |= _downstream(definition, {node.name})
            else:
                latest[node.name] = (StepKey(node.name), "skipped")
                skipped.append(node.name)
        elif node.name not in definition.entry_steps and node.name not in live:
            latest[node.name] = (StepKey(node.name), "skipped")
            skipped.append(node.name)
    if skipped:
        step_run_store.skip_steps(tx, run.id, skipped)
        audit.record_event(tx, run.id, "skipped", metadata={"steps": skipped})
    statuses = [status for _, status in latest.values()]
    if not any(status in _ACTIVE for status in statuses):
        return _finish(tx, run, definition, context)
    run = _hold_or_run(tx, run, definition, latest, context)
    if not started:
        return run
    try:
        dispatcher.dispatch_steps(runtime, tx, run, started, schedule_pending=True)
    except errors.DispatchFailed as exc:
        if strict:
            raise
        return fail_run(
            runtime,
            tx,
            run,
            _dispatch_failed(exc, None, {"next_steps": started}),
            current_step=None,
        )
    return run


def _latest_states(tx: Transaction, run: Run) -> dict[str, tuple[StepKey, str]]:
    """Each step's newest step run (elements of a map aside) and its progress status."""
    latest: dict[str, tuple[StepKey, str]] = {}
    for state in step_run_reads.progress_states(tx.connection, run.id):
        key = StepKey.parse(state.key)
        if key.item is not None:
            continue
        status: str = state.status
        if state.waiting:
            status = "waiting"
        elif state.routed:
            status = "routed"
        previous = latest.get(key.name)
        if previous is None or key.iteration >= previous[0].iteration:
            latest[key.name] = (key, status)
    return latest


def _downstream(definition: WorkflowDefinition, active: set[str]) -> set[str]:
    """Steps an edge path leads to from the active steps: they may still start."""
    seen: set[str] = set()
    frontier = list(active)
    while frontier:
        for successor in definition.successors(frontier.pop()):
            if successor not in seen:
                seen.add(successor)
                frontier.append(successor)
    return seen


def _hold_or_run(
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    latest: Mapping[str, tuple[StepKey, str]],
    context: Mapping[str, Any] | None,
) -> Run:
    """The run's status while steps are open.

    ``paused`` while only pauses and approvals wait; ``retrying`` while the rest of what is
    open waits for a retry; else as it is (a step that starts makes it ``running``). A lone
    pause, approval or retrying step is named as the current step.
    """
    merged = context if context is not None else UNSET
    manual: list[str] = []
    retrying: list[str] = []
    others = 0
    for name, (key, status) in latest.items():
        if status == "waiting" and definition.steps[name].is_manual:
            manual.append(key.key)
        elif status == "failed":
            retrying.append(key.key)
        elif status in _ACTIVE:
            others += 1
    if manual and not retrying and not others:
        current = manual[0] if len(manual) == 1 else None
        return write_run(tx, run, status="paused", context=merged, current_step=current)
    if retrying and not others and run.status != "paused":
        current = retrying[0] if len(retrying) == 1 else None
        return write_run(tx, run, status="retrying", context=merged, current_step=current)
    if run.status == "paused":
        return write_run(tx, run, status="running", context=merged, current_step=None)
    return write_run(tx, run, context=merged) if context is not None else run


def _finish(
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    context: Mapping[str, Any] | None,
) -> Run:
    merged = context if context is not None else UNSET
    _discard_timers(tx, run, definition)
    return write_run(
        tx, run, status="completed", context=merged, current_step=None, last_error=None
    )


def _discard_timers(tx: Transaction, run: Run, definition: WorkflowDefinition) -> None:
    """Delete the finished run's timer jobs still queued (its deadline, an unused timeout).

    Only the database queue's; another executor's delivers and does nothing.
    """
    if definition.has_timers:
        job_store.discard_queued(tx, run.id)


def _complete(
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    context: Mapping[str, Any] | None,
) -> Run:
    """End a single-path run: steps its path did not reach are recorded ``skipped``."""
    if definition.has_choices:
        skipped = step_run_store.skip_steps(tx, run.id, list(definition.steps))
        if skipped:
            audit.record_event(tx, run.id, "skipped", metadata={"steps": skipped})
    return _finish(tx, run, definition, context)


def _next_key(tx: Transaction, run: Run, definition: WorkflowDefinition, target: str) -> str:
    """The key of ``target``'s next step run: a new iteration when a loop comes back to it."""
    if target not in definition.cyclic_steps and not run.operator_retries:
        # A step of a retried run may have run before the failure: only those pay the read.
        return target
    newest = step_run_reads.newest_iteration(tx.connection, run.id, target)
    return StepKey(target, newest + 1).key if newest else target


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


def fail_run(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    error: Mapping[str, Any],
    *,
    current_step: str | None,
) -> Run:
    """Fail the run and, in the same transaction, queue the rollback of what can be undone."""
    run = write_run(tx, run, status="failed", current_step=current_step, last_error=error)
    definition = runtime.definition_of(run)
    _discard_timers(tx, run, definition)
    return compensation.dispatch_if_available(runtime, tx, run, definition)
