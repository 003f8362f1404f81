"""Child runs: a ``child`` step starts a run of another workflow and waits for it.

**Starting.** The child is created, and its first work dispatched, in the transaction that
claims the parent's step (the parent run's row is locked), with idempotency key
``child:<parent run id>:<step run key>`` (``:<attempt>`` added from attempt 2): a redelivered
job finds the step already waiting and does nothing, and the unique key keeps one child per
step run even if two starts ever raced. The child records its parent (``parent_run_id``,
``parent_step``); its trace is a trace of its own whose root links to the parent's.

**Finishing.** The child's finishing transaction (completed, failed or cancelled) queues a job
for the parent's waiting step, in that same transaction: committed with the child's end, or
not at all. Its delivery (any worker holding the parent's workflow) reads the finished child,
completes the parent's step with the child's final context, or fails it (``child_failed``,
``child_cancelled``) onto its ``error`` route, and moves the parent on. A worker that dies
first leaves the job queued; a duplicate delivery finds the step settled and does nothing.
Not locking the parent in the child's transaction also keeps lock order one way (parent, then
child: cancelling a parent cancels its children), so the two never deadlock.

**Parent close.** A parent that finishes while a child it started is unfinished (it is
cancelled, or it fails: a deadline, another branch failing) closes that child in the same
transaction, by the child step's ``on_parent_close``: ``"cancel"`` (the default, as Temporal's
parent-close policy) cancels it, and theirs down the tree; ``"abandon"`` leaves it running. The
parent's audit trail records ``child_cancelled`` or ``child_abandoned``, the child's a
``cancelled`` event whose actor is the parent. The policy is read from the parent's
``child_started`` event, so closing needs no workflow definition (a worker that holds another
version finishes a cancellation all the same). A completed parent has nothing to close: a child
step settles only once its child has finished, or cancels it when it times out. A child step
that times out cancels its child whatever the policy.

**Compensation.** A child step has no compensate callback: when the parent fails after a child
completed, the parent's rollback does not undo the child, and the child's own compensation
runs only when the child itself fails. To undo a completed child, route the parent's error to
a step (or a child workflow) that does it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from squidmesh_sdk import error_records, errors, telemetry
from squidmesh_sdk.definition.conditions import resolve_path
from squidmesh_sdk.graph import StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import dispatcher, inputs, lifecycle, progression
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RunCreated, RunTransitioned, StepCompleted
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import audit, run_creation, run_reads
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Attempt, Run, StepRun

__all__ = ["begin", "cancel_child", "child_key", "finish_wait", "run_transitioned"]

_MAX_KEY = 200


def child_key(parent_run_id: str, step: str, attempt: int) -> str:
    """The idempotency key of the child that step run ``step`` of a parent starts."""
    key = f"child:{parent_run_id}:{step}" + (f":{attempt}" if attempt > 1 else "")
    if len(key) <= _MAX_KEY:
        return key
    return f"child:{parent_run_id}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def begin(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    step_run: StepRun,
    attempt: Attempt,
) -> bool:
    """Start (or find) the child of step run ``step_run`` and wait for it.

    Returns:
        ``True`` when the step waits for its child; ``False`` when it failed at once (a
        payload value missing from the run state, or one the child's trigger refuses) and the
        run was moved on here.

    Raises:
        InvalidWorkflow, InvalidTrigger: this process does not hold the child's workflow (the
            delivery is retried, by a worker that may).
        DispatchFailed: the executor refused the child's first step (the claim rolls back).
    """
    workflow = str(node.options["workflow"])
    child_definition = runtime.definition(workflow)
    trigger = child_definition.trigger(node.options.get("trigger"))
    key = child_key(run.id, step_run.step, attempt.number)
    held = run_reads.find_by_start_key(tx.connection, workflow, key)
    if held is not None:
        child = held[0]
    else:
        payload = _payload(node, run)
        if isinstance(payload, str):
            _fail(runtime, tx, run, definition, node, step_run, attempt, payload, None)
            return False
        try:
            child = _start(runtime, tx, run, child_definition, trigger.name, payload, key, step_run)
        except errors.InvalidPayload as exc:
            _fail(runtime, tx, run, definition, node, step_run, attempt, str(exc), exc.to_dict())
            return False
        audit.record_event(
            tx,
            run.id,
            "child_started",
            step=step_run.step,
            metadata={
                "child_run_id": child.id,
                "workflow": workflow,
                "idempotency_key": key,
                # Read back when the parent finishes first (see the module's "Parent close").
                "on_parent_close": node.options.get("on_parent_close", "cancel"),
            },
        )
    resume: dict[str, Any] = {
        "kind": "child",
        "child_run_id": child.id,
        "workflow": workflow,
        "output_key": node.output_key,
    }
    if node.timeout is not None:
        timeout_at = tx.now + timedelta(seconds=node.timeout)
        resume["timeout_at"] = timeout_at.isoformat()
        dispatcher.dispatch_steps(runtime, tx, run, [step_run.step], schedule_in=node.timeout)
    step_run_store.persist_waiting(tx, step_run.id, resume)
    return True


def finish_wait(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    step_run: StepRun,
    attempt: Attempt,
) -> bool:
    """End the wait of step run ``step_run`` if its child has finished; ``False`` if not yet."""
    resume = step_run.resume or {}
    child_id = resume.get("child_run_id")
    if not isinstance(child_id, str):
        return False
    child = run_reads.find_run(tx.connection, child_id)
    if child is None:
        # Purged (or deleted by the host) after it finished, while this run was failed: its
        # result is gone, so the step fails, saying so, instead of every delivery raising.
        error = error_records.error_record(
            "child_failed",
            f"child run {child_id} no longer exists (purged or deleted): its result is lost",
            code="child_failed",
            retryable=False,
            step=node.name,
            details={"child_run_id": child_id, "status": "missing"},
        )
        progression.fail_open_step(runtime, tx, run, definition, node, step_run, attempt, error)
        return True
    if not child.terminal:
        return False
    if child.status == "completed":
        attempt_store.complete_attempt(tx, attempt)
        output = inputs.namespaced(node, child.context)
        step_run_store.complete_step(tx, step_run.id, output)
        tx.events.append(
            StepCompleted(run, step_run.step, attempt.number, tx.now - attempt.inserted_at)
        )
        progression.advance_after_success(
            runtime, tx, run, definition, node, output, key=step_run.step
        )
        return True
    code = "child_failed" if child.status == "failed" else "child_cancelled"
    error = error_records.error_record(
        "child_failed",
        f"child run {child.id} of {child.workflow} {child.status}",
        code=code,
        retryable=False,
        step=node.name,
        details={"child_run_id": child.id, "workflow": child.workflow, "status": child.status},
        cause=dict(child.last_error) if child.last_error else None,
    )
    progression.fail_open_step(runtime, tx, run, definition, node, step_run, attempt, error)
    return True


def cancel_child(runtime: Runtime, tx: Transaction, step_run: StepRun, reason: str) -> None:
    """Cancel the child step run ``step_run`` waits for, if it still runs."""
    child_id = (step_run.resume or {}).get("child_run_id")
    if not isinstance(child_id, str):
        return
    child = run_reads.find_run(tx.connection, child_id, for_update=True)
    if child is None or child.terminal or child.status == "cancelling":
        return  # (gone: purged after it finished, nothing to cancel)
    lifecycle.cancel_locked(
        runtime, tx, child, actor={"parent_run_id": child.parent_run_id or ""}, reason=reason
    )


def run_transitioned(runtime: Runtime, tx: Transaction, event: RunTransitioned) -> None:
    """Link a run's status change to its parent and its children, in its transaction.

    Called for each status change in a transaction about to commit (see
    :mod:`.finishing`): a child that finished queues a job for its parent's waiting step; a
    run that is cancelled (or cancelling) or failed closes its unfinished children by their
    step's ``on_parent_close``. Each child cancelled adds events, so the cascade goes down the
    tree. Only runs with a parent, and cancellations and failures, cost a query.
    """
    finished = event.to_status in ("completed", "failed", "cancelled")
    if finished and event.run.parent_run_id and event.run.parent_step:
        _wake_parent(runtime, tx, event.run)
    # From ``cancelling`` the children were closed when the cancellation began.
    closing = event.to_status in ("cancelling", "cancelled", "failed")
    if closing and event.from_status != "cancelling":
        _close_children(runtime, tx, event.run, event.to_status)


def _close_children(runtime: Runtime, tx: Transaction, parent: Run, status: str) -> None:
    """Cancel (or abandon, by their step's policy) the unfinished children of ``parent``."""
    unfinished = [
        child
        for child in run_reads.list_children(tx.connection, parent.id)
        if child.status not in ("completed", "failed", "cancelled", "cancelling")
    ]
    if not unfinished:
        return
    policies = _policies(tx, parent.id)
    cancelled = status in ("cancelling", "cancelled")
    reason = "its parent run was cancelled" if cancelled else "its parent run failed"
    for child in unfinished:
        metadata: dict[str, Any] = {
            "child_run_id": child.child_run_id,
            "workflow": child.workflow,
            "parent_status": status,
        }
        if policies.get(child.child_run_id, "cancel") == "abandon":
            metadata["child_status"] = child.status
            audit.record_event(
                tx, parent.id, "child_abandoned", step=child.parent_step, metadata=metadata
            )
            continue
        locked = run_store.lock_run(tx.connection, child.child_run_id)
        if locked.terminal or locked.status == "cancelling":
            continue  # it finished (or began cancelling) since it was listed
        closed = lifecycle.cancel_locked(
            runtime, tx, locked, actor={"parent_run_id": parent.id}, reason=reason
        )
        metadata["child_status"] = closed.status
        audit.record_event(
            tx, parent.id, "child_cancelled", step=child.parent_step, metadata=metadata
        )


def _policies(tx: Transaction, parent_run_id: str) -> dict[str, str]:
    """Child run id to its step's ``on_parent_close``, from the parent's ``child_started``."""
    policies: dict[str, str] = {}
    for event in audit.list_events(tx.connection, parent_run_id):
        metadata = event.metadata or {}
        if event.type == "child_started" and isinstance(metadata.get("child_run_id"), str):
            # Children started before the option existed were cancelled: the default.
            policies[metadata["child_run_id"]] = str(metadata.get("on_parent_close", "cancel"))
    return policies


def _wake_parent(runtime: Runtime, tx: Transaction, child: Run) -> None:
    """Queue the parent's waiting child step, in the child's finishing transaction."""
    assert child.parent_run_id is not None  # noqa: S101 - checked by the caller
    assert child.parent_step is not None  # noqa: S101
    parent = run_reads.find_run(tx.connection, child.parent_run_id)
    # Gone (purged, or deleted by the host, after it finished), cancelled or failed: nothing
    # waits for the child any more, which must still be able to finish on its own.
    if parent is None or parent.terminal:
        return
    # In the parent's trace (linked to the child's), as the parent's other work is.
    with telemetry.span(
        f"child {child.workflow} {child.status}",
        parent=parent.trace_context,
        links=telemetry.link_to(child.trace_context),
        attributes=telemetry.run_attributes(
            parent.workflow, parent.id, **{"squidmesh.child_run_id": child.id}
        ),
    ):
        dispatcher.dispatch_steps(runtime, tx, parent, [child.parent_step])


def _payload(node: StepNode, run: Run) -> dict[str, Any] | str:
    """The child's payload read from the run state, or what is missing."""
    state = inputs.state(run)
    payload: dict[str, Any] = {}
    mapping: Mapping[str, Any] = node.options.get("payload_from") or {}
    for field, path in mapping.items():
        found, value = resolve_path(state, str(path))
        if not found:
            return (
                f"child step {node.name!r}: payload_from {field!r} reads {path!r}, which is not "
                "in the run state"
            )
        payload[str(field)] = value
    return payload


def _start(
    runtime: Runtime,
    tx: Transaction,
    parent: Run,
    definition: WorkflowDefinition,
    trigger: str,
    payload: Mapping[str, Any],
    key: str,
    step_run: StepRun,
) -> Run:
    attributes = {
        telemetry.WORKFLOW: definition.name,
        telemetry.TRIGGER: trigger,
        "squidmesh.parent_run_id": parent.id,
        "squidmesh.parent_step": step_run.step,
    }
    with telemetry.span(
        f"run {definition.name}",
        attributes=attributes,
        links=telemetry.link_to(parent.trace_context),
        new_trace=True,
    ) as root:
        child = run_creation.create_run(
            tx,
            definition,
            payload,
            trigger=trigger,
            start_key=key,
            trace_context=telemetry.carrier_of(root) or telemetry.generated_carrier(),
            parent_run_id=parent.id,
            parent_step=step_run.step,
        )
        root.set_attribute(telemetry.RUN_ID, child.id)
        dispatcher.dispatch_run(runtime, tx, child)
    tx.events.append(RunCreated(child))
    return child


def _fail(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    step_run: StepRun,
    attempt: Attempt,
    message: str,
    details: Mapping[str, Any] | None,
) -> None:
    error = error_records.error_record(
        "invalid_child_payload",
        message,
        code="invalid_child_payload",
        retryable=False,
        step=node.name,
        details=dict(details) if details else None,
    )
    progression.fail_open_step(runtime, tx, run, definition, node, step_run, attempt, error)
