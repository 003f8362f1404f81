"""Map steps: run a step's body once per element of a list, at most ``max_parallel`` at a time.

When a map step starts, its own step run (``charge``) opens and waits (``resume["kind"] ==
"map"``), one ``pending`` step run per element is written (``charge[0]``, ``charge[1]``...,
each with its input snapshot, the element under the ``map_as`` parameter), and the first
``max_parallel`` of them are dispatched as one atomic batch. Each element has its own attempts
and retries. When an element completes the next one not yet dispatched is; when the last one
completes, the map step completes with the outputs in element order and the run moves on from
it. An element that fails for good fails the map step (its error route, or the run). An empty
list completes the step at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from squidmesh_sdk import error_records
from squidmesh_sdk.definition.conditions import resolve_path
from squidmesh_sdk.graph import StepKey, StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import dispatcher, inputs, progression
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import StepCompleted
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import step_run_reads
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Attempt, Run, StepRun

__all__ = ["element_failed", "element_finished", "start"]


def start(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    step_run: StepRun,
    attempt: Attempt,
) -> Literal["executed"]:
    """Open map step run ``step_run`` (its attempt just begun): write and dispatch elements."""
    assert node.map_over is not None  # noqa: S101 - only map steps start here
    found, items = resolve_path(inputs.state(run), node.map_over)
    if not found or not isinstance(items, list):
        what = "is not in the run state" if not found else f"is {type(items).__name__}, not a list"
        error = error_records.error_record(
            "invalid_map",
            f"map step {node.name!r}: map_over {node.map_over!r} {what}",
            code="invalid_map",
            retryable=False,
            step=node.name,
        )
        progression.fail_open_step(runtime, tx, run, definition, node, step_run, attempt, error)
        return "executed"
    if not items:
        _complete(runtime, tx, run, definition, node, step_run, attempt, [])
        return "executed"
    key = StepKey.parse(step_run.step)
    base = inputs.snapshot(node, inputs.state(run))
    elements = [
        (key.element(index).key, {**base, node.map_as: item}, node.recovery.to_dict())
        for index, item in enumerate(items)
    ]
    step_run_store.schedule_steps(tx, run.id, elements)
    first = len(items) if node.max_parallel is None else min(node.max_parallel, len(items))
    step_run_store.persist_waiting(
        tx, step_run.id, {"kind": "map", "count": len(items), "dispatched": first}
    )
    dispatcher.dispatch_steps(runtime, tx, run, [element[0] for element in elements[:first]])
    return "executed"


def element_finished(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    key: StepKey,
) -> Run:
    """Element ``key`` completed: dispatch the next element, or complete the map step."""
    if run.terminal:
        return run
    if run.status == "cancelling":
        return progression.step_ended_while_cancelling(tx, run)
    parent = step_run_reads.get_step_run(tx.connection, run.id, key.whole.key)
    resume = dict(parent.resume or {}) if parent is not None else {}
    if parent is None or parent.status != "running" or resume.get("kind") != "map":
        return run  # the map step already failed (another element) or the run moved on
    count = int(resume["count"])
    elements = step_run_reads.element_runs(tx.connection, run.id, key.whole.key)
    completed = [sr for sr in elements if sr.status == "completed"]
    if len(completed) == count:
        attempt = attempt_store.latest_attempt(tx.connection, parent.id)
        assert attempt is not None  # noqa: S101 - opened with the map step run
        ordered = sorted(completed, key=lambda sr: StepKey.parse(sr.step).item or 0)
        return _complete(
            runtime,
            tx,
            run,
            definition,
            node,
            parent,
            attempt,
            [dict(sr.output or {}) for sr in ordered],
        )
    dispatched = int(resume["dispatched"])
    if dispatched < count:
        resume["dispatched"] = dispatched + 1
        step_run_store.persist_waiting(tx, parent.id, resume)
        dispatcher.dispatch_steps(runtime, tx, run, [key.whole.element(dispatched).key])
    return run


def element_failed(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    key: StepKey,
    error: Mapping[str, Any],
) -> Run:
    """Element ``key`` failed for good: the map step fails with it."""
    if run.terminal:
        return run
    if run.status == "cancelling":
        return progression.step_ended_while_cancelling(tx, run)
    parent = step_run_reads.get_step_run(tx.connection, run.id, key.whole.key)
    if parent is None or parent.status != "running":
        return run
    attempt = attempt_store.latest_attempt(tx.connection, parent.id)
    assert attempt is not None  # noqa: S101 - opened with the map step run
    failure = error_records.error_record(
        "map_element_failed",
        f"map step {node.name!r}: element {key.item} failed: {error.get('message')}",
        code="map_element_failed",
        retryable=False,
        step=node.name,
        details={"item": key.item},
        cause={k: v for k, v in error.items() if k != "traceback"},
    )
    return progression.fail_open_step(runtime, tx, run, definition, node, parent, attempt, failure)


def _complete(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    node: StepNode,
    step_run: StepRun,
    attempt: Attempt,
    outputs: list[dict[str, Any]],
) -> Run:
    output = {node.output_key or node.name: outputs}
    attempt_store.complete_attempt(tx, attempt)
    step_run_store.complete_step(tx, step_run.id, output)
    tx.events.append(
        StepCompleted(run, step_run.step, attempt.number, tx.now - attempt.inserted_at)
    )
    return progression.advance_after_success(
        runtime, tx, run, definition, node, output, key=step_run.step
    )
