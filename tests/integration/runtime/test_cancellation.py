"""Cancellation: at once when no step body runs, cooperatively when one does, and a run that
ends cancelled leaves nothing running, also when the worker of its step died."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from samples import manual_approval
from squidmesh_sdk import COMPLETE, InvalidTransition, Retry, StepContext, Workflow, manual
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import claiming, execution
from squidmesh_sdk.runtime.events import RunTransitioned, StepFailed, StepSkipped
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store.records import Run
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv

SEVEN_DAYS = timedelta(days=7)


def waiting(calls: list[str]) -> Workflow:
    wf = Workflow("waiting", triggers=[manual("go")])

    @wf.step
    def prepare() -> dict[str, Any]:
        return {"prepared": True}

    hold = wf.wait("hold", duration=SEVEN_DAYS)

    @wf.step
    def deliver() -> dict[str, Any]:
        calls.append("deliver")
        return {"delivered": True}

    wf.chain(prepare, hold, deliver, COMPLETE)
    return wf


def flaky(calls: list[int]) -> Workflow:
    wf = Workflow("flaky", triggers=[manual("go")])

    @wf.step(retry=Retry(max_attempts=3, backoff=Retry.fixed(SEVEN_DAYS)))
    def call_gateway(ctx: StepContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        raise ConnectionError("gateway down")

    wf.chain(call_gateway, COMPLETE)
    return wf


def flaky_fan(calls: list[int]) -> Workflow:
    wf = Workflow("flaky_fan", triggers=[manual("go")])

    @wf.step
    def right() -> dict[str, Any]:
        return {"right": "R"}

    @wf.step(retry=Retry(max_attempts=3, backoff=Retry.fixed(SEVEN_DAYS)))
    def left(ctx: StepContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        raise ConnectionError("left is down")

    @wf.step(after=[left, right])
    def join(right: str) -> dict[str, Any]:
        return {"joined": right}

    return wf


def blocking(started: threading.Event, gate: threading.Event) -> Workflow:
    wf = Workflow("blocking", triggers=[manual("go")])

    @wf.step
    def slow() -> dict[str, Any]:
        started.set()
        assert gate.wait(timeout=60), "the test never released the step"
        return {"slow": "done"}

    @wf.step
    def after() -> dict[str, Any]:
        return {"after": "done"}

    wf.chain(slow, after, COMPLETE)
    return wf


def _cancel_timed(env: WorkflowEnvironment, run_id: str) -> Run:
    """Cancel; assert it took well under a second of wall time and no fake time at all."""
    before = env.clock.now()
    began = time.monotonic()
    cancelled = env.client.cancel_run(run_id)
    assert time.monotonic() - began < 1.0
    assert env.clock.now() == before
    return cancelled


def _transitions(env: WorkflowEnvironment, run_id: str) -> list[tuple[str, str]]:
    return [
        (e.from_status, e.to_status)
        for e in env.events.of_type(RunTransitioned)
        if e.run.id == run_id
    ]


def _nothing_running(run: Run) -> bool:
    step_runs = run.step_runs or ()
    attempts = [a for sr in step_runs for a in sr.attempts or ()]
    return all(sr.status != "running" for sr in step_runs) and all(
        a.status != "running" for a in attempts
    )


def test_a_run_in_a_seven_day_wait_is_cancelled_at_once(make_env: MakeEnv) -> None:
    calls: list[str] = []
    env = make_env(waiting(calls))
    run = env.start_run("waiting")
    parked = env.client.inspect_run(run.id)
    # The run waits at its timer step, whose step run stays open until the timer fires.
    assert (parked.status, parked.current_step) == ("running", "hold")
    cancelled = _cancel_timed(env, run.id)
    assert (cancelled.status, cancelled.current_step) == ("cancelled", None)
    assert env.client.inspect_run(run.id).status == "cancelled"
    assert _transitions(env, run.id)[-2:] == [
        ("running", "cancelling"),
        ("cancelling", "cancelled"),
    ]
    explanation = env.client.explain_run(run.id)
    assert (explanation.reason, explanation.next_actions) == ("cancelled", ("replay_run",))
    # Seven days later the wait's job fires: a no-op.
    assert env.run_until_idle() == 1
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert calls == []
    # The timer step was closed by the cancellation, as a failed step with the reason.
    assert [(sr.step, sr.status) for sr in done.step_runs or ()] == [
        ("prepare", "completed"),
        ("hold", "failed"),
    ]
    hold = done.step_run("hold")
    assert hold is not None
    assert hold.last_error is not None
    assert hold.last_error["message"] == "run cancelled while the step waited"
    assert [e.reason for e in env.events.of_type(StepSkipped)] == ["run_cancelled"]


def test_a_run_waiting_for_a_retry_is_cancelled_at_once(make_env: MakeEnv) -> None:
    calls: list[int] = []
    env = make_env(flaky(calls))
    run = env.start_run("flaky")
    assert env.client.inspect_run(run.id).status == "retrying"
    cancelled = _cancel_timed(env, run.id)
    assert (cancelled.status, cancelled.current_step, cancelled.last_error) == (
        "cancelled",
        None,
        None,
    )
    assert _transitions(env, run.id)[-2:] == [
        ("retrying", "cancelling"),
        ("cancelling", "cancelled"),
    ]
    assert env.run_until_idle() == 1  # the retry's job: a no-op
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert calls == [1]
    assert _nothing_running(done)
    assert env.client.explain_run(run.id).reason == "cancelled"


def test_a_dependency_run_waiting_for_a_retry_is_cancelled_at_once(make_env: MakeEnv) -> None:
    calls: list[int] = []
    env = make_env(flaky_fan(calls))
    run = env.start_run("flaky_fan")
    waiting_run = env.client.inspect_run(run.id, include_history=True)
    assert waiting_run.status == "retrying"
    assert waiting_run.current_step == "left"
    assert {sr.step: sr.status for sr in waiting_run.step_runs or ()} == {
        "left": "failed",
        "right": "completed",
    }
    assert _cancel_timed(env, run.id).status == "cancelled"
    assert env.run_until_idle() == 1
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert calls == [1]
    assert _nothing_running(done)


@pytest.mark.parametrize("kind", ["pause", "approval"])
def test_a_paused_run_is_cancelled_at_once_and_its_gate_closed(
    make_env: MakeEnv, kind: str
) -> None:
    if kind == "pause":
        wf = Workflow("pausing", triggers=[manual("go")])
        hold = wf.pause("hold")
        wf.chain(hold, COMPLETE)
        env = make_env(wf)
        run = env.start_run("pausing")
        gate = "hold"
    else:
        env = make_env(manual_approval.workflow)
        run = env.start_run("manual_approval", {"account_id": "acct-1"})
        gate = "wait_for_approval"
    assert env.client.explain_run(run.id).reason in (
        "paused_for_manual_action",
        "paused_for_approval",
    )
    cancelled = _cancel_timed(env, run.id)
    assert (cancelled.status, cancelled.current_step) == ("cancelled", None)
    assert _transitions(env, run.id)[-1] == ("paused", "cancelled")
    assert [e.step for e in env.events.of_type(StepFailed)] == [gate]
    done = env.client.inspect_run(run.id, include_history=True)
    assert _nothing_running(done)
    assert env.client.explain_run(run.id).reason == "cancelled"
    with pytest.raises(InvalidTransition):
        env.client.cancel_run(run.id)


def test_a_run_whose_step_body_runs_is_cancelling_until_the_body_returns(
    make_env: MakeEnv,
) -> None:
    started, gate = threading.Event(), threading.Event()
    env = make_env(blocking(started, gate), run_immediately=False)
    run = env.start_run("blocking")
    worker = threading.Thread(target=env.run_due)
    worker.start()
    assert started.wait(timeout=60)
    cancelling = env.client.cancel_run(run.id)
    assert (cancelling.status, cancelling.current_step) == ("cancelling", None)
    explanation = env.client.explain_run(run.id)
    assert (explanation.reason, explanation.step) == ("cancelling", "slow")
    assert explanation.details == {"running_steps": ["slow"]}
    assert explanation.next_actions == ("wait_for_cancellation",)
    gate.set()
    worker.join(timeout=60)
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert [(sr.step, sr.status) for sr in done.step_runs or ()] == [("slow", "completed")]
    assert _nothing_running(done)


def _claimed_and_abandoned(env: WorkflowEnvironment, run_id: str, step: str) -> None:
    """Claim ``step`` as a worker would, then never run it: the worker died."""
    runtime = env.client.runtime
    with runtime.transaction() as tx:
        assert claiming.claim_step(runtime, tx, run_id, step) is not None


def test_a_cancelling_run_whose_worker_died_is_finished_without_running_steps(
    make_env: MakeEnv,
) -> None:
    env = make_env(blocking(threading.Event(), threading.Event()), run_immediately=False)
    run = env.start_run("blocking")
    _claimed_and_abandoned(env, run.id, "slow")
    assert env.client.cancel_run(run.id).status == "cancelling"
    # The queue knows the previous delivery's worker died: the delivery closes what it left.
    outcome = execution.execute_step(
        env.client.runtime, run.id, "slow", delivery=Delivery(reclaim=True)
    )
    assert outcome == "cancelled"
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert _nothing_running(done)
    slow = done.step_run("slow")
    assert slow is not None
    assert slow.status == "failed"
    assert slow.last_error is not None
    assert slow.last_error["kind"] == "cancelled"
    assert [(a.status, (a.error or {}).get("code")) for a in slow.attempts or ()] == [
        ("abandoned", "worker_lost")
    ]
    assert [e.step for e in env.events.of_type(StepFailed)] == ["slow"]
    assert env.client.explain_run(run.id).reason == "cancelled"


def test_a_duplicate_delivery_leaves_a_cancelling_run_to_the_step_still_running(
    make_env: MakeEnv,
) -> None:
    env = make_env(blocking(threading.Event(), threading.Event()), run_immediately=False)
    run = env.start_run("blocking")
    _claimed_and_abandoned(env, run.id, "slow")
    env.client.cancel_run(run.id)
    # Nobody says the step's worker died: it may still be running the body.
    assert env.client.perform({"kind": "step", "run_id": run.id, "step": "slow"}) == "skipped"
    assert env.client.inspect_run(run.id).status == "cancelling"
    assert env.events.of_type(StepSkipped)[-1].reason == "run_cancelling"


def test_a_cancelled_runs_step_left_running_by_a_dead_worker_is_closed(
    make_env: MakeEnv,
) -> None:
    env = make_env(blocking(threading.Event(), threading.Event()), run_immediately=False)
    run = env.start_run("blocking")
    _claimed_and_abandoned(env, run.id, "slow")
    env.client.cancel_run(run.id)
    # A run cancelled by an earlier release (which did not close the step run) gets it closed
    # by the delivery that finds its worker dead.
    with env.client.runtime.transaction() as tx:
        locked = run_store.lock_run(tx.connection, run.id)
        run_store.write_run(tx, locked, status="cancelled")
    outcome = execution.execute_step(
        env.client.runtime, run.id, "slow", delivery=Delivery(reclaim=True)
    )
    assert outcome == "skipped"
    assert _nothing_running(env.client.inspect_run(run.id, include_history=True))


def test_a_stale_step_of_a_cancelling_run_is_closed_after_the_stale_timeout(
    make_env: MakeEnv,
) -> None:
    env = make_env(
        blocking(threading.Event(), threading.Event()),
        run_immediately=False,
        stale_step_timeout=60,
    )
    run = env.start_run("blocking")
    _claimed_and_abandoned(env, run.id, "slow")
    env.client.cancel_run(run.id)
    job = {"kind": "step", "run_id": run.id, "step": "slow"}
    assert env.client.perform(job) == "skipped"  # too early: it may still be running
    env.clock.advance(61)
    assert env.client.perform(job) == "cancelled"
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert _nothing_running(done)
    slow = done.step_run("slow")
    assert slow is not None
    assert [(a.status, (a.error or {}).get("code")) for a in slow.attempts or ()] == [
        ("abandoned", "stale_running_step")
    ]


def test_a_cancelling_dependency_run_is_cancelled_when_its_last_branch_ends(
    make_env: MakeEnv,
) -> None:
    wf = Workflow("branches", triggers=[manual("go")])

    @wf.step
    def left() -> dict[str, Any]:
        return {"left": "L"}

    @wf.step
    def right() -> dict[str, Any]:
        return {"right": "R"}

    @wf.step(after=[left, right])
    def join(left: str, right: str) -> dict[str, Any]:
        return {"joined": left + right}

    env = make_env(wf, run_immediately=False)
    run = env.start_run("branches")
    runtime = env.client.runtime
    claims = {}
    for step in ("left", "right"):
        with runtime.transaction() as tx:
            claims[step] = claiming.claim_step(runtime, tx, run.id, step)
    assert env.client.cancel_run(run.id).status == "cancelling"
    left_done = execution.execute_step(
        runtime, run.id, "left", delivery=Delivery(claim=claims["left"])
    )
    assert left_done == "executed"
    assert env.client.inspect_run(run.id).status == "cancelling"  # right still runs
    assert env.client.explain_run(run.id).details == {"running_steps": ["right"]}
    execution.execute_step(runtime, run.id, "right", delivery=Delivery(claim=claims["right"]))
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert done.context == {"left": "L", "right": "R"}
    assert [(sr.step, sr.status) for sr in done.step_runs or ()] == [
        ("left", "completed"),
        ("right", "completed"),
    ]
