"""Recording a step's result: its attempt and step run, and where the run goes next.

The result of a body (its output, its branch label, or the exception it raised) is written in
the transaction that moves the run on: the next steps' jobs, a retry, an error route, the run's
failure. A result whose step run was finished meanwhile by someone else (a takeover, a cancel)
is refused with :class:`StaleResult` and discarded by the delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import trace

from squidmesh_sdk import errors, telemetry
from squidmesh_sdk.frozen import fast_init
from squidmesh_sdk.graph import StepKey, StepNode, WorkflowDefinition
from squidmesh_sdk.runtime import inputs, mapping, progression
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RunEvent, StepCompleted, StepFailed
from squidmesh_sdk.runtime.failures import describe_error, retry_decision
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import prepared
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Attempt, Run, StepRun

__all__ = ["Claim", "Outcome", "StaleResult", "StepResult", "record_result"]

Outcome = Literal["executed", "reconciled", "skipped", "cancelled", "paused", "waiting"]
"""What a step delivery did."""


@fast_init
@dataclass(frozen=True, slots=True)
class Claim:
    """A step run and its attempt, started under the run's lock, for its body to run."""

    run: Run
    definition: WorkflowDefinition
    node: StepNode
    step_run: StepRun
    attempt: Attempt
    events: tuple[RunEvent, ...] = ()
    """Events of a claim made ahead (by the transaction that queued or leased the job): they
    are reported inside the delivery's own ``process`` span, where the transition happens."""


@fast_init
@dataclass(frozen=True, slots=True)
class StepResult:
    """What a body gave: its output (and branch label), or the exception it raised."""

    output: dict[str, Any] | None = None
    exception: BaseException | None = None
    label: str | None = None
    """The branch the step returned (:class:`~squidmesh_sdk.Branch`), if it did."""


class StaleResult(Exception):
    """The step run was finished by someone else while the body ran: discard this result."""


def record_result(runtime: Runtime, tx: Transaction, claim: Claim, outcome: StepResult) -> Run:
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
            run = run_store.relock_and_complete(tx, claim.run, claim.attempt, output)
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
        attempt_store.fail_attempt(tx, claim.attempt, error)
        step_run = step_run_store.fail_step(tx, claim.step_run.id, error)
    except errors.StaleRecord as stale:
        raise StaleResult from stale
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
