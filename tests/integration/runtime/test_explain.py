"""``explain_run``: every reason of the reference table, each reached by a real run."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from samples import manual_approval
from squidmesh_sdk import COMPLETE, Retry, RunExplanation, Workflow, manual
from squidmesh_sdk.runtime.explanation import explain
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv

WAIT = ("wait_for_step", "cancel_run")


def chain(*, irreversible: bool = False, fails: int = 0, max_attempts: int = 1) -> Workflow:
    wf = Workflow("chain", triggers=[manual("go")])

    @wf.step
    def first() -> dict[str, Any]:
        return {"first": 1}

    @wf.step(
        retry=Retry(max_attempts=max_attempts, backoff=Retry.fixed(10)), irreversible=irreversible
    )
    def second(ctx: Any = None) -> dict[str, Any]:
        if fails:
            raise ValueError("second broke")
        return {"second": 2}

    wf.chain(first, second, COMPLETE)
    return wf


def _explain(env: WorkflowEnvironment, run_id: str) -> RunExplanation:
    explanation = env.client.explain_run(run_id)
    assert explanation.evidence["run"]["id"] == run_id
    assert explanation.to_dict()["reason"] == explanation.reason
    return explanation


def test_completed_runs_offer_replay_unless_blocked(make_env: MakeEnv) -> None:
    env = make_env(chain())
    done = _explain(env, env.start_run("chain").id)
    assert (done.reason, done.step, done.next_actions) == ("completed", None, ("replay_run",))
    assert done.details == {"replay": {"allowed": True}}
    blocked_env = make_env(chain(irreversible=True))
    blocked = _explain(blocked_env, blocked_env.start_run("chain").id)
    assert blocked.next_actions == ()
    assert blocked.details["replay"]["allowed"] is False
    assert blocked.details["replay"]["blocked_by"][0]["step"] == "second"


def test_pending_scheduled_running_cancelling_and_cancelled(make_env: MakeEnv) -> None:
    gate, started = threading.Event(), threading.Event()
    wf = Workflow("slow", triggers=[manual("go")])

    @wf.step
    def quick() -> None:
        return None

    @wf.step
    def slow() -> None:
        started.set()
        assert gate.wait(timeout=60)

    wf.chain(quick, slow, COMPLETE)
    env = make_env(wf, run_immediately=False)
    run = env.start_run("slow")
    pending = _explain(env, run.id)
    assert (pending.reason, pending.step, pending.next_actions) == (
        "pending_dispatch",
        "quick",
        WAIT,
    )
    ((_, quick_job),) = env.executor.pending
    env.client.perform(quick_job)
    scheduled = _explain(env, run.id)
    assert (scheduled.reason, scheduled.step) == ("step_scheduled", "slow")
    slow_job = env.executor.pending[-1][1]
    worker = threading.Thread(target=env.client.perform, args=(slow_job,))
    worker.start()
    assert started.wait(timeout=60)
    running = _explain(env, run.id)
    assert (running.reason, running.step, running.next_actions) == ("step_running", "slow", WAIT)
    assert running.details == {
        "duplicate_delivery_policy": "skip_while_running",
        "stale_step_reclaim": {"enabled": False},
    }
    assert running.evidence["attempt"]["status"] == "running"
    env.client.cancel_run(run.id)
    cancelling = _explain(env, run.id)
    assert (cancelling.reason, cancelling.next_actions) == (
        "cancelling",
        ("wait_for_cancellation",),
    )
    gate.set()
    worker.join(timeout=60)
    cancelled = _explain(env, run.id)
    assert (cancelled.reason, cancelled.next_actions) == ("cancelled", ("replay_run",))


def test_retrying_exhausted_and_failed(make_env: MakeEnv) -> None:
    env = make_env(chain(fails=1, max_attempts=2))
    run = env.start_run("chain")
    retrying = _explain(env, run.id)
    assert (retrying.reason, retrying.step) == ("waiting_for_retry", "second")
    assert retrying.details["next_attempt_number"] == 2
    assert retrying.details["last_error"]["message"] == "second broke"
    assert retrying.next_actions == ("wait_for_retry", "cancel_run")
    env.run_until_idle()
    exhausted = _explain(env, run.id)
    assert (exhausted.reason, exhausted.step) == ("retry_exhausted", "second")
    assert (exhausted.details["max_attempts"], exhausted.details["latest_attempt_number"]) == (2, 2)
    assert exhausted.next_actions == ("retry_run", "replay_run")
    once = make_env(chain(fails=1))
    failed = _explain(once, once.start_run("chain").id)
    assert (failed.reason, failed.step) == ("step_failed", "second")
    assert failed.details["last_error"]["message"] == "second broke"


def test_paused_runs(make_env: MakeEnv, database_url: str) -> None:
    env = make_env(manual_approval.workflow)
    run = env.start_run("manual_approval", {"account_id": "a"})
    approval = _explain(env, run.id)
    assert approval.reason == "paused_for_approval"
    assert approval.details == {
        "approval_targets": {"ok": "record_approval", "error": "record_rejection"}
    }
    assert approval.next_actions == ("approve_run", "reject_run", "cancel_run")
    assert approval.evidence["resume"]["kind"] == "approval"

    pausing = Workflow("pausing", triggers=[manual("go")])
    pausing.chain(pausing.pause("hold"), COMPLETE)
    pause_env = make_env(pausing)
    paused = _explain(pause_env, pause_env.start_run("pausing").id)
    assert (paused.reason, paused.details) == (
        "paused_for_manual_action",
        {"resume_target": "__complete__"},
    )
    assert paused.next_actions == ("unblock_run", "cancel_run")

    # A client that does not know the workflow (an old deploy, another service).
    with WorkflowEnvironment([pausing], database=database_url) as stranger:
        unavailable = stranger.client.explain_run(run.id)
        assert unavailable.reason == "paused_with_unavailable_workflow"
        assert unavailable.next_actions == ("cancel_run",)
        assert unavailable.evidence["workflow_definition"] == {"available": False}

    # Resume metadata lost (written by a tool outside squidmesh): the real paused run's record
    # with its step run's resume removed.
    record = env.client.inspect_run(run.id, include_history=True)
    step_runs = tuple(
        dataclasses.replace(sr, resume=None) if sr.step == "wait_for_approval" else sr
        for sr in record.step_runs or ()
    )
    missing = explain(
        dataclasses.replace(record, step_runs=step_runs),
        env.client.definition("manual_approval"),
        stale_step_timeout=None,
    )
    assert (missing.reason, missing.details) == (
        "paused_with_missing_resume_metadata",
        {"resume": "missing"},
    )


def test_dependency_reasons(make_env: MakeEnv) -> None:
    wf = Workflow("deps", triggers=[manual("go")])

    @wf.step
    def left() -> dict[str, Any]:
        return {"left": 1}

    @wf.step
    def right() -> dict[str, Any]:
        return {"right": 2}

    @wf.step(after=[left, right])
    def join() -> None:
        return None

    env = make_env(wf, run_immediately=False)
    run = env.start_run("deps")
    left_job, right_job = (job for _, job in env.executor.pending)
    waiting = _explain(env, run.id)
    assert (waiting.reason, waiting.step) == ("waiting_for_dependencies", "join")
    assert waiting.details["dependency_statuses"] == {"left": "pending", "right": "pending"}
    assert waiting.next_actions == ("wait_for_dependencies", "cancel_run")
    assert [s["step"] for s in waiting.evidence["steps"]] == ["left", "right", "join"]
    env.client.perform(left_job)
    env.client.perform(right_job)
    scheduled = _explain(env, run.id)
    assert (scheduled.reason, scheduled.step) == ("step_scheduled", "join")
    assert scheduled.details == {"satisfied_dependencies": ["left", "right"]}
