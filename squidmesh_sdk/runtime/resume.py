"""``retry_run``: an operator resumes a failed run from its failed step, keeping what completed.

Replay starts a new run from the start; retry goes on with the *same* run. Its completed steps
keep their outputs (the run's context is left as it is); the failed step gets a new step run
(a new iteration key, ``charge@2``, so its first try keeps its attempts and error) with a
fresh retry budget, and the run goes on from there as if the step had just been reached.

* **One path at a time** (``definition.single_path``): the run's current step moves back to the
  failed step, or to ``from_step``, a step the run reached before. Steps after it that had
  completed run again, each as a new iteration.
* **Several paths**: the failed step runs (or ``from_step``, one of them) start again through
  :func:`~squidmesh_sdk.runtime.progression.settle`; branches that completed stay completed,
  and steps that were scheduled when the run failed (closed ``skipped`` by the failure) are
  reopened and queued again.

Refused when the run is not ``failed``, when its compensation has started (the rollback has
undone completed steps: going on would build on effects that are gone; replay it instead), and,
unless ``allow_irreversible``, when irreversible or non-compensatable steps that completed at or
after the retried step would run again. The run's deadline still counts from its start.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from squidmesh_sdk import errors, telemetry
from squidmesh_sdk.graph import DEADLINE_STEP, StepKey, WorkflowDefinition
from squidmesh_sdk.runtime import dispatcher, finishing, manual, progression
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.store import audit, run_creation, run_reads, step_run_reads
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run, StepRun

__all__ = ["retry_run"]

_COMPENSATION_STARTED = frozenset({"running", "completed", "failed"})


def retry_run(
    runtime: Runtime,
    run_id: str,
    *,
    from_step: str | None = None,
    allow_irreversible: bool = False,
    actor: str | Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> Run:
    """Resume failed run ``run_id`` from its failed step (or ``from_step``), in one transaction.

    Raises:
        InvalidResume: a malformed actor or reason; nothing changed.
        InvalidRunId, RunNotFound: no such run.
        InvalidTransition: the run is not ``failed``.
        RetryRefused: its compensation has started (``compensation_started``).
        InvalidStep: ``from_step`` is not a step the run can resume from.
        UnsafeRetry: irreversible or non-compensatable steps would run again (listed).
        DispatchFailed: the executor refused the step; nothing changed.
    """
    details = manual.validate_cancellation(actor, reason)
    runtime.check_schema()
    with runtime.database.read() as connection:
        found = run_reads.get_run(connection, run_id)
    with (
        telemetry.action("retry", found.workflow, found.id, found.trace_context),
        runtime.transaction() as tx,
    ):
        run = run_store.lock_run(tx.connection, run_id)
        if run.status != "failed":
            raise errors.InvalidTransition(run.status, "running", run_id=run.id)
        definition = runtime.definition_of(run)
        # The steps the failure closed before they started go on as they were scheduled.
        reopened = step_run_store.reopen_closed(tx, run.id, finishing.CLOSED_BY_FAILURE["code"])
        step_runs = step_run_reads.list_step_runs(tx.connection, run.id)
        started = [
            sr.step
            for sr in step_runs
            if (sr.recovery or {}).get("compensation", {}).get("status") in _COMPENSATION_STARTED
        ]
        if started:
            raise errors.RetryRefused(
                run.id,
                f"its compensation has started (steps {', '.join(started)}): the rollback "
                "undid what the retry would build on; replay the run instead",
                code="compensation_started",
            )
        if definition.single_path:
            keys = [_single_path_key(run, definition, step_runs, from_step)]
        else:
            keys = _failed_keys(tx, run, from_step)
        _guard(run, definition, step_runs, keys, allow_irreversible=allow_irreversible)
        run = run_store.count_operator_retry(tx, run)
        audit.record_event(
            tx,
            run.id,
            "retried",
            step=keys[0] if len(keys) == 1 else None,
            actor=details.get("actor"),
            comment=details.get("reason"),
            metadata={
                "from_steps": keys,
                "allow_irreversible": allow_irreversible,
                "retry": run.operator_retries,
                "last_error": dict(run.last_error) if run.last_error else None,
                **({"reopened_steps": reopened} if reopened else {}),
            },
        )
        _restore_timers(runtime, tx, run, definition, step_runs)
        if definition.single_path:
            key = StepKey.parse(keys[0])
            newest = step_run_reads.newest_iteration(tx.connection, run.id, key.name)
            fresh = StepKey(key.name, newest + 1).key
            run = progression.write_run(
                tx, run, status="running", current_step=fresh, last_error=None
            )
            dispatcher.dispatch_steps(runtime, tx, run, [fresh])
            return run
        run = progression.write_run(tx, run, status="running", current_step=None, last_error=None)
        scheduled = [sr.step for sr in _latest(step_runs) if sr.status == "pending"]
        if scheduled:
            dispatcher.dispatch_steps(runtime, tx, run, scheduled)
        names = [StepKey.parse(key).name for key in keys]
        return progression.settle(runtime, tx, run, definition, activate=names, strict=True)


def _single_path_key(
    run: Run, definition: WorkflowDefinition, step_runs: list[StepRun], from_step: str | None
) -> str:
    """The step run a single-path run resumes from: its failed step, or ``from_step``'s newest."""
    if from_step is None:
        if run.current_step is None:
            raise errors.InvalidStep(run.id, None, "the run failed at no step: nothing to retry")
        return run.current_step
    name = StepKey.parse(from_step).name
    if name not in definition.steps:
        raise errors.InvalidStep(run.id, from_step, "the run's workflow has no such step")
    reached = [sr for sr in step_runs if StepKey.parse(sr.step).name == name]
    if not reached:
        raise errors.InvalidStep(
            run.id, from_step, "the run never reached this step: retry from one it ran"
        )
    return max(reached, key=lambda sr: (sr.inserted_at, StepKey.parse(sr.step).iteration)).step


def _failed_keys(tx: Transaction, run: Run, from_step: str | None) -> list[str]:
    """The newest step runs of a several-paths run that failed without taking a route."""
    failed: list[str] = []
    for state in step_run_reads.progress_states(tx.connection, run.id):
        key = StepKey.parse(state.key)
        if key.item is None and state.status == "failed" and not state.routed:
            failed.append(state.key)
    newest: dict[str, str] = {}
    for failed_key in failed:
        parsed = StepKey.parse(failed_key)
        held = newest.get(parsed.name)
        if held is None or StepKey.parse(held).iteration < parsed.iteration:
            newest[parsed.name] = failed_key
    keys = list(newest.values())
    if from_step is not None:
        name = StepKey.parse(from_step).name
        keys = [key for key in keys if StepKey.parse(key).name == name]
        if not keys:
            raise errors.InvalidStep(
                run.id,
                from_step,
                "in a workflow with several paths a run resumes from a step that failed: "
                f"{', '.join(newest) or 'none did'}",
            )
    if not keys:
        raise errors.InvalidStep(run.id, None, "no step of the run failed: nothing to retry")
    return keys


def _guard(
    run: Run,
    definition: WorkflowDefinition,
    step_runs: list[StepRun],
    keys: list[str],
    *,
    allow_irreversible: bool,
) -> None:
    """Refuse to run irreversible or non-compensatable completed steps again.

    ``step_runs`` are in the order they were started (``list_step_runs``).
    """
    if allow_irreversible:
        return
    # Step runs come in the order they were started: what follows the first resumed one.
    first = next((i for i, sr in enumerate(step_runs) if sr.step in keys), len(step_runs))
    again = [sr for sr in step_runs[first:] if definition.single_path or sr.step in keys]
    blockers = run_creation.replay_blockers(again, definition)
    if blockers:
        raise errors.UnsafeRetry(run.id, blockers)


def _latest(step_runs: list[StepRun]) -> list[StepRun]:
    """Each step's newest step run (map elements aside)."""
    newest: dict[str, StepRun] = {}
    for sr in step_runs:
        key = StepKey.parse(sr.step)
        if key.item is not None:
            continue
        held = newest.get(key.name)
        if held is None or StepKey.parse(held.step).iteration <= key.iteration:
            newest[key.name] = sr
    return list(newest.values())


def _restore_timers(
    runtime: Runtime,
    tx: Transaction,
    run: Run,
    definition: WorkflowDefinition,
    step_runs: list[StepRun],
) -> None:
    """Queue again what the failure discarded: the deadline, open waits' timeouts.

    A waiting child step whose child finished meanwhile (the failure cancelled it, or it ended
    on its own) is queued now: that end woke no one while the run was failed.
    """
    if definition.deadline is not None:
        due = run.inserted_at + timedelta(seconds=definition.deadline)
        dispatcher.dispatch_steps(runtime, tx, run, [DEADLINE_STEP], schedule_in=_delay(due, tx))
    for sr in step_runs:
        resume = sr.resume or {}
        if sr.status != "running" or not isinstance(resume.get("kind"), str):
            continue
        due_text = resume.get("until") or resume.get("timeout_at")
        child_id = resume.get("child_run_id") if resume["kind"] == "child" else None
        if isinstance(child_id, str) and _child_finished(tx, child_id):
            dispatcher.dispatch_steps(runtime, tx, run, [sr.step])
        elif isinstance(due_text, str):
            due = datetime.fromisoformat(due_text)
            dispatcher.dispatch_steps(runtime, tx, run, [sr.step], schedule_in=_delay(due, tx))


def _child_finished(tx: Transaction, child_id: str) -> bool:
    """Whether the child has finished, or is gone (purged after it finished).

    Locked (parent, then child: the order every transaction takes them in), so that a child
    finishing meanwhile, which read this run as failed and woke no one, has committed before
    it is read here: it is then seen finished, and its step queued.
    """
    child = run_reads.find_run(tx.connection, child_id, for_update=True)
    return child is None or child.terminal  # gone: its step fails, saying so, when delivered


def _delay(due: datetime, tx: Transaction) -> float:
    return max((due - tx.now).total_seconds(), 0.0)
