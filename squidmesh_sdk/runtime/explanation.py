"""``explain_run``: why a run is where it is, and what an operator can do about it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from squidmesh_sdk import errors
from squidmesh_sdk.graph import COMPLETE_TARGET, StepKey, WorkflowDefinition
from squidmesh_sdk.runtime.evidence import (
    attempt_evidence,
    cancellation_evidence,
    closed_details,
    run_evidence,
    step_run_evidence,
)
from squidmesh_sdk.runtime.holds import HOLD_ACTIONS, Hold
from squidmesh_sdk.store import run_creation
from squidmesh_sdk.store.records import Attempt, Run, StepRun

__all__ = ["RunExplanation", "explain"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunExplanation:
    """A structured diagnosis of one run.

    Attributes:
        status: The run's status.
        reason: Why it is there, e.g. ``"paused_for_approval"`` or ``"retry_exhausted"``.
        step: The step the reason is about, if any.
        details: Reason-specific facts (targets, attempt numbers, the last error...).
        next_actions: What can be done now, e.g. ``("approve_run", "reject_run", "cancel_run")``.
        evidence: The records the diagnosis was made from, JSON-safe.
    """

    status: str
    reason: str
    step: str | None
    details: Mapping[str, Any]
    next_actions: tuple[str, ...]
    evidence: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "status": self.status,
            "reason": self.reason,
            "step": self.step,
            "details": dict(self.details),
            "next_actions": list(self.next_actions),
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class _Result:
    """Builds explanations that share a status and evidence."""

    status: str
    evidence: dict[str, Any]
    extra: Mapping[str, Any]
    """Details every explanation of this run carries (its deadline)."""

    def __call__(
        self, reason: str, step: str | None, details: Mapping[str, Any], actions: tuple[str, ...]
    ) -> RunExplanation:
        return RunExplanation(
            status=self.status,
            reason=reason,
            step=step,
            details={**details, **self.extra},
            next_actions=actions,
            evidence=self.evidence,
        )


def explain(
    run: Run,
    definition: WorkflowDefinition | None,
    *,
    stale_step_timeout: float | None,
    unavailable: errors.DefinitionUnavailable | None = None,
    current_definition: WorkflowDefinition | None = None,
    hold: Hold | None = None,
    dead_letter: Hold | None = None,
) -> RunExplanation:
    """Diagnose ``run``, loaded with history.

    ``definition`` is the version the run is pinned to, ``None`` when unavailable here
    (``unavailable`` says why when this client holds other versions);
    ``current_definition`` is the version new runs start on, which a replay would use.
    ``hold``: a limit of the database queue keeps a due step job of the run queued.
    ``dead_letter``: a job of the run kept ``failed`` after its last delivery. A run that is
    not finished waits for it (``job_dead_lettered``); a paused or failed run is explained as
    it would be, with the job in ``details["dead_lettered_job"]`` and ``retry_job`` first.
    """
    explanation = _diagnose(
        run,
        definition,
        stale_step_timeout=stale_step_timeout,
        unavailable=unavailable,
        current_definition=current_definition,
        hold=hold,
        dead_letter=dead_letter,
    )
    if dead_letter is None or explanation.reason == _DEAD_LETTERED:
        return explanation
    return dataclasses.replace(
        explanation,
        details={**explanation.details, "dead_lettered_job": dict(dead_letter.details)},
        next_actions=("retry_job", *explanation.next_actions),
    )


_DEAD_LETTERED = "job_dead_lettered"


def _diagnose(
    run: Run,
    definition: WorkflowDefinition | None,
    *,
    stale_step_timeout: float | None,
    unavailable: errors.DefinitionUnavailable | None,
    current_definition: WorkflowDefinition | None,
    hold: Hold | None,
    dead_letter: Hold | None,
) -> RunExplanation:
    assert run.step_runs is not None  # noqa: S101 - callers load the history
    evidence: dict[str, Any] = {"run": run_evidence(run)}
    if definition is None:
        evidence["workflow_definition"] = {"available": False}
        if unavailable is not None:
            evidence["workflow_definition"].update(
                version=unavailable.version, held_versions=list(unavailable.held)
            )
    cancellation = cancellation_evidence(run)
    if cancellation is not None:
        evidence["cancellation"] = cancellation
    current = run.step_run(run.current_step) if run.current_step else None
    if current is not None:
        evidence["step_run"] = step_run_evidence(current)
        latest = _latest(current)
        if latest is not None:
            evidence["attempt"] = attempt_evidence(latest)

    extra: dict[str, Any] = {}
    if definition is not None and definition.deadline is not None and not run.terminal:
        deadline_at = run.inserted_at + timedelta(seconds=definition.deadline)
        extra["deadline_at"] = deadline_at.isoformat()
    if run.terminal:
        extra.update(closed_details(run, cancellation))
    result = _Result(run.status, evidence, extra)
    replayable = definition or current_definition

    if run.status in ("completed", "cancelled"):
        replay, actions = _replay(run, replayable)
        return result(run.status, None, replay, actions)
    # A cancelling run needs no definition to finish: any worker closes it.
    if unavailable is not None and run.status not in ("failed", "cancelling"):
        steps = _waiting_steps(run)
        return _definition_unavailable(run, unavailable.version, unavailable.held, steps, result)
    if definition is not None and run.status not in ("failed", "paused"):
        # A version kept across a change that removed a step this run still needs.
        missing = [
            step for step in _waiting_steps(run) if StepKey.parse(step).name not in definition.steps
        ]
        if missing:
            held = (definition.version,)
            return _definition_unavailable(run, definition.version, held, missing, result)
    if dead_letter is not None and run.status in ("pending", "running", "retrying", "cancelling"):
        # Whatever its steps look like, nothing moves the run until the job is retried: a
        # cancel leaves it cancelling, since the step's next delivery is what closes it.
        actions = ("retry_job",) if run.status == "cancelling" else ("retry_job", "cancel_run")
        return result(_DEAD_LETTERED, dead_letter.step, dead_letter.details, actions)
    if run.status == "cancelling":
        # Only a step body still running keeps a run cancelling: name it (them).
        running = [sr.step for sr in run.step_runs if sr.status == "running"]
        step = run.current_step or (running[0] if running else None)
        details: dict[str, Any] = {"running_steps": running}
        return result("cancelling", step, details, ("wait_for_cancellation",))
    if run.status == "paused":
        return _paused(run, current, definition, result, evidence)
    if run.status in ("running", "pending") and definition is not None:
        waiting = _waiting(run, current, definition, result, evidence)
        if waiting is not None:
            return waiting
    if hold is not None and run.status in ("running", "pending", "retrying"):
        # Its step is due but a limit keeps it queued: that, not the step, is what it waits on.
        return result(hold.reason, hold.step, hold.details, HOLD_ACTIONS[hold.reason])
    if run.status == "retrying":
        retrying = current or _latest_failed(run)
        step = retrying.step if retrying else run.current_step
        latest = _latest(retrying) if retrying else None
        details = {
            "next_attempt_number": (latest.number + 1) if latest else 1,
            "last_error": run.last_error,
        }
        return result("waiting_for_retry", step, details, ("wait_for_retry", "cancel_run"))
    if run.status == "failed":
        replay, actions = _replay(run, replayable)
        code = (run.last_error or {}).get("code")
        # Past its deadline, which counts from the start, a retried run would fail at once.
        if (
            definition is not None
            and not _compensation_started(run)
            and code != "deadline_exceeded"
        ):
            actions = ("retry_run", *actions)
        failed = current or _latest_failed(run)
        latest = _latest(failed) if failed else None
        if code in _FAILURE_REASONS:
            details = {"last_error": run.last_error, **replay}
            return result(_FAILURE_REASONS[code], run.current_step, details, actions)
        node = (
            definition.steps.get(StepKey.parse(failed.step).name)
            if (definition and failed)
            else None
        )
        retry = node.retry if node is not None else None
        # Only a policy that allowed more than one attempt can be "exhausted".
        if (
            retry is not None
            and retry.max_attempts > 1
            and latest is not None
            and (latest.number >= retry.max_attempts)
        ):
            details = {
                "max_attempts": retry.max_attempts,
                "latest_attempt_number": latest.number,
                "last_error": run.last_error,
                **replay,
            }
            return result("retry_exhausted", run.current_step, details, actions)
        details = {"last_error": run.last_error, **replay}
        return result("step_failed", run.current_step, details, actions)
    return _in_progress(run, current, definition, stale_step_timeout, result, evidence)


_FAILURE_REASONS = {
    "deadline_exceeded": "deadline_exceeded",
    "approval_rejected": "approval_rejected",
    "approval_timed_out": "timed_out",
    "pause_timed_out": "timed_out",
    "signal_timed_out": "timed_out",
    "child_timed_out": "timed_out",
    "child_failed": "child_failed",
    "child_cancelled": "child_failed",
    "unknown_branch": "unknown_branch",
    "invalid_concurrency_key": "invalid_concurrency_key",
}
"""Failures explained by what ended the run rather than by a step's attempts."""


def _paused(
    run: Run,
    current: StepRun | None,
    definition: WorkflowDefinition | None,
    result: _Result,
    evidence: dict[str, Any],
) -> RunExplanation:
    waiting = _manual_waits(run)
    if current is None and waiting:
        current = waiting[0]
    resume = current.resume if current is not None else None
    evidence["resume"] = resume
    step = current.step if current is not None else run.current_step
    if not isinstance(resume, Mapping):
        return result(
            "paused_with_missing_resume_metadata", step, {"resume": "missing"}, ("cancel_run",)
        )
    kind = resume.get("kind")
    if kind not in ("approval", "pause"):
        return result(
            "paused_with_missing_resume_metadata",
            step,
            {"resume": "invalid_shape"},
            ("cancel_run",),
        )
    if definition is None:
        return result(
            "paused_with_unavailable_workflow",
            step,
            {"workflow_definition": "unavailable"},
            ("cancel_run",),
        )
    assert step is not None  # noqa: S101 - a paused run waits at a step
    details = _manual_details(step, resume, definition)
    if len(waiting) > 1:
        details["waiting_steps"] = [sr.step for sr in waiting]
    if any(
        t is not None and t != COMPLETE_TARGET and t not in definition.steps
        for t in _targets(details)
    ):
        return result("paused_with_invalid_resume_target", step, details, ("cancel_run",))
    if kind == "approval":
        return result(
            "paused_for_approval", step, details, ("approve_run", "reject_run", "cancel_run")
        )
    return result("paused_for_manual_action", step, details, ("unblock_run", "cancel_run"))


def _manual_waits(run: Run) -> list[StepRun]:
    """Pause and approval step runs that wait for a person."""
    return [
        sr
        for sr in run.step_runs or ()
        if sr.status == "running" and (sr.resume or {}).get("kind") in ("pause", "approval")
    ]


def _manual_details(
    key: str, resume: Mapping[str, Any], definition: WorkflowDefinition
) -> dict[str, Any]:
    """Where a pause or approval leads: from the pinned definition (or an old run's record)."""
    name = StepKey.parse(key).name
    details: dict[str, Any]
    if resume.get("kind") == "approval":
        if {"ok_target", "error_target"} <= resume.keys():  # paused before routes were derived
            targets = {"ok": resume["ok_target"], "error": resume["error_target"]}
        else:
            targets = {
                "ok": _route_target(definition, name, "ok"),
                "error": _route_target(definition, name, "error") or "fail_run",
            }
        details = {"approval_targets": targets}
    else:
        target = resume.get("target", _route_target(definition, name, "ok"))
        details = {"resume_target": target}
    if resume.get("timeout_at") is not None:
        details["timeout_at"] = resume["timeout_at"]
        details["timeout_target"] = _route_target(definition, name, "timeout") or "fail_run"
    return details


def _route_target(definition: WorkflowDefinition, step: str, outcome: str) -> str | None:
    routes = definition.routes_from(step, outcome) if step in definition.steps else ()
    return routes[0].target if routes else None


def _targets(details: Mapping[str, Any]) -> list[str | None]:
    found = list((details.get("approval_targets") or {}).values())
    found.append(details.get("resume_target"))
    return [t for t in found if t != "fail_run"]


def _waiting(
    run: Run,
    current: StepRun | None,
    definition: WorkflowDefinition,
    result: _Result,
    evidence: dict[str, Any],
) -> RunExplanation | None:
    """A running run that waits: for a timer, a signal, a child run, or a person beside it."""
    timers = _waits(run, "wait")
    signals = _waits(run, "signal")
    children = _waits(run, "child")
    manual = _manual_waits(run)
    waits = timers + signals + children + manual
    busy = [
        sr for sr in run.step_runs or () if sr.status in ("pending", "running") and sr not in waits
    ]
    if busy or not (timers or signals or children or manual):
        if manual:
            evidence["waiting_steps"] = [sr.step for sr in manual]
        return None
    details: dict[str, Any]
    if signals:
        waiting = current if current in signals else signals[0]
        assert waiting is not None  # noqa: S101
        resume = waiting.resume or {}
        details = {"signal": resume.get("signal")}
        if resume.get("timeout_at") is not None:
            name = StepKey.parse(waiting.step).name
            details["timeout_at"] = resume["timeout_at"]
            details["timeout_target"] = _route_target(definition, name, "timeout") or "fail_run"
        if len(signals) > 1:
            details["waiting_steps"] = [sr.step for sr in signals]
        return result("waiting_for_signal", waiting.step, details, ("signal_run", "cancel_run"))
    if children:
        waiting = current if current in children else children[0]
        assert waiting is not None  # noqa: S101
        resume = waiting.resume or {}
        details = {"child_run_id": resume.get("child_run_id"), "workflow": resume.get("workflow")}
        if resume.get("timeout_at") is not None:
            details["timeout_at"] = resume["timeout_at"]
        return result("waiting_for_child", waiting.step, details, ("wait_for_child", "cancel_run"))
    if timers:
        timer = current if current in timers else timers[0]
        assert timer is not None  # noqa: S101
        details = {"until": (timer.resume or {}).get("until")}
        if len(timers) > 1:
            details["waiting_steps"] = [sr.step for sr in timers]
        return result("waiting_for_timer", timer.step, details, ("wait_for_timer", "cancel_run"))
    return None


def _waits(run: Run, kind: str) -> list[StepRun]:
    """The run's step runs waiting, with ``resume`` of this kind."""
    return [
        sr
        for sr in run.step_runs or ()
        if sr.status == "running" and (sr.resume or {}).get("kind") == kind
    ]


def _in_progress(
    run: Run,
    current: StepRun | None,
    definition: WorkflowDefinition | None,
    stale_step_timeout: float | None,
    result: _Result,
    evidence: dict[str, Any],
) -> RunExplanation:
    actions: tuple[str, ...] = ("wait_for_step", "cancel_run")
    assert run.step_runs is not None  # noqa: S101
    statuses = {step_run.step: step_run.status for step_run in run.step_runs}
    if definition is not None and not definition.single_path:
        evidence["steps"] = [
            {
                "step": node.name,
                "status": statuses.get(node.name, "waiting"),
                "depends_on": list(node.depends_on),
                "last_error": _last_error(run, node.name),
            }
            for node in definition.steps.values()
        ]
        # A person can move a run whose approval (or pause) waits beside a running branch: that,
        # not the join after both, is what to say (below, with the decision's actions).
        decisions = bool(_manual_waits(run))
        for node in definition.steps.values():
            if node.name in statuses or not node.depends_on:
                continue
            waiting_on = [d for d in node.depends_on if statuses.get(d) != "completed"]
            if waiting_on and not decisions:
                details = {
                    "waiting_on": waiting_on,
                    "dependency_statuses": {d: statuses.get(d, "missing") for d in node.depends_on},
                }
                return result(
                    "waiting_for_dependencies",
                    node.name,
                    details,
                    ("wait_for_dependencies", "cancel_run"),
                )
        for node in definition.steps.values():
            if statuses.get(node.name) == "pending" and node.depends_on:
                details = {"satisfied_dependencies": list(node.depends_on)}
                return result("step_scheduled", node.name, details, actions)
        waits = {sr.step for sr in _manual_waits(run)}
        current = next(
            (sr for sr in run.step_runs if sr.status == "running" and sr.step not in waits),
            current,
        )
    if current is not None and current.status == "running":
        reclaim: dict[str, Any] = {"enabled": stale_step_timeout is not None}
        if stale_step_timeout is not None:
            reclaim["timeout_seconds"] = stale_step_timeout
        details = {"duplicate_delivery_policy": "skip_while_running", "stale_step_reclaim": reclaim}
        waiting = evidence.get("waiting_steps")
        if waiting:
            # An approval (or pause) waits beside the running branch: it can be decided now,
            # with the actions of the kinds that wait (unblocking an approval is refused).
            details["waiting_steps"] = waiting
            kinds = {(sr.resume or {}).get("kind") for sr in _manual_waits(run)}
            actions = (
                "wait_for_step",
                *(("approve_run", "reject_run") if "approval" in kinds else ()),
                *(("unblock_run",) if "pause" in kinds else ()),
                "cancel_run",
            )
        return result("step_running", current.step, details, actions)
    if run.status == "pending":
        return result("pending_dispatch", run.current_step, {}, actions)
    return result("step_scheduled", run.current_step, {}, actions)


def _last_error(run: Run, step: str) -> Mapping[str, Any] | None:
    step_run = run.step_run(step)
    return step_run.last_error if step_run is not None else None


def _replay(
    run: Run, definition: WorkflowDefinition | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    if definition is None:
        return {"workflow_definition": "unavailable"}, ()
    blockers = run_creation.replay_blockers(run.step_runs or (), definition)
    if blockers:
        replay = {
            "allowed": False,
            "required_override": "allow_irreversible",
            "blocked_by": blockers,
        }
        return {"replay": replay}, ()
    return {"replay": {"allowed": True}}, ("replay_run",)


def _compensation_started(run: Run) -> bool:
    """Whether the failed run's rollback has begun: ``retry_run`` refuses it then."""
    for step_run in run.step_runs or ():
        state = (step_run.recovery or {}).get("compensation")
        if isinstance(state, Mapping) and state.get("status") in ("running", "completed", "failed"):
            return True
    return False


def _latest(step_run: StepRun) -> Attempt | None:
    return step_run.attempts[-1] if step_run.attempts else None


def _latest_failed(run: Run) -> StepRun | None:
    failed = [sr for sr in run.step_runs or () if sr.status == "failed"]
    return max(failed, key=lambda sr: sr.updated_at) if failed else None


def _waiting_steps(run: Run) -> list[str]:
    """The steps the run waits on: scheduled or running step runs, else its current step."""
    waiting = [sr.step for sr in run.step_runs or () if sr.status in ("pending", "running")]
    return waiting or ([run.current_step] if run.current_step else [])


def _definition_unavailable(
    run: Run, version: str, held: tuple[str, ...], steps: list[str], result: _Result
) -> RunExplanation:
    """No work of the run can go on here: its version, or steps of it, are not deployed."""
    details = {
        "workflow": run.workflow,
        "version": version,
        "held_versions": list(held),
        "steps": steps,
    }
    actions = ("deploy_version", "cancel_run", "replay_run")
    return result("definition_unavailable", steps[0] if steps else None, details, actions)
