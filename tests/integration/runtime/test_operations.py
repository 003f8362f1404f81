"""Operator actions on whole runs: cancel, replay, paging, step states, stale takeover."""

from __future__ import annotations

from typing import Any

import pytest

from squidmesh_sdk import (
    COMPLETE,
    InvalidTransition,
    RunNotFound,
    UnsafeReplay,
    Workflow,
    manual,
)
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import claiming, execution
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import step_starts as step_start_store
from tests.integration.runtime.conftest import MakeEnv


def chain(name: str = "chain", *, irreversible: bool = False) -> Workflow:
    wf = Workflow(name, triggers=[manual("go")])

    @wf.step
    def reserve() -> dict[str, Any]:
        return {"reserved": True}

    @wf.step(irreversible=irreversible)
    def charge() -> dict[str, Any]:
        return {"charged": True}

    wf.chain(reserve, charge, COMPLETE)
    return wf


def test_cancel_a_pending_run_at_once(make_env: MakeEnv) -> None:
    env = make_env(chain(), run_immediately=False)
    run = env.start_run("chain")
    assert env.client.cancel_run(run.id).status == "cancelled"
    assert env.run_due() == 1  # the queued first job is a no-op now
    done = env.client.inspect_run(run.id, include_history=True)
    assert (done.status, done.step_runs) == ("cancelled", ())


def test_cancel_a_running_run_between_steps_at_once(make_env: MakeEnv) -> None:
    env = make_env(chain(), run_immediately=False)
    run = env.start_run("chain")
    ((_, job),) = env.executor.pending
    env.client.perform(job)  # reserve ran; charge is queued
    assert env.client.cancel_run(run.id).status == "cancelled"
    with pytest.raises(InvalidTransition) as raised:
        env.client.cancel_run(run.id)
    assert (raised.value.from_status, raised.value.to_status) == ("cancelled", "cancelling")
    env.run_due()  # charge's job: a no-op
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert [sr.step for sr in done.step_runs or ()] == ["reserve"]


def test_cancel_a_run_with_a_step_in_flight_waits_for_that_step(make_env: MakeEnv) -> None:
    env = make_env(chain(), run_immediately=False)
    run = env.start_run("chain")
    with env.client.runtime.transaction() as tx:  # a worker claimed reserve; its body runs
        assert claiming.claim_step(env.client.runtime, tx, run.id, "reserve") is not None
    assert env.client.cancel_run(run.id).status == "cancelling"
    with pytest.raises(InvalidTransition) as raised:
        env.client.cancel_run(run.id)
    assert (raised.value.from_status, raised.value.to_status) == ("cancelling", "cancelling")


def test_cancelling_a_finished_run_is_an_invalid_transition(make_env: MakeEnv) -> None:
    env = make_env(chain())
    run = env.start_run("chain")
    with pytest.raises(InvalidTransition, match="the run is already completed"):
        env.client.cancel_run(run.id)


def test_replay_creates_a_linked_run_that_runs_again(make_env: MakeEnv) -> None:
    env = make_env(chain())
    source = env.start_run("chain")
    replay = env.client.replay_run(source.id)
    assert replay.replayed_from_run_id == source.id
    assert replay.id != source.id
    assert env.client.inspect_run(replay.id).status == "completed"
    assert env.client.inspect_run(source.id).replayed_from_run_id is None


def test_replay_after_an_irreversible_step_needs_the_override(make_env: MakeEnv) -> None:
    env = make_env(chain(irreversible=True))
    source = env.start_run("chain")
    with pytest.raises(UnsafeReplay) as raised:
        env.client.replay_run(source.id)
    assert raised.value.steps == (
        {
            "step": "charge",
            "irreversible": True,
            "compensatable": False,
            "replay": "manual_review_required",
            "recovery": "manual_intervention",
        },
    )
    assert len(env.client.list_runs()) == 1
    replay = env.client.replay_run(source.id, allow_irreversible=True)
    assert env.client.inspect_run(replay.id).status == "completed"


def test_list_runs_pages_with_a_cursor(make_env: MakeEnv) -> None:
    env = make_env(chain(), run_immediately=False)
    ids = [env.start_run("chain").id for _ in range(5)]
    newest_first = list(reversed(ids))
    first = env.client.list_runs(limit=2)
    second = env.client.list_runs(limit=2, after=first[-1].id)
    third = env.client.list_runs(limit=2, after=second[-1].id)
    assert [r.id for r in first + second + third] == newest_first
    assert env.client.list_runs(limit=2, after=third[-1].id) == []
    with pytest.raises(RunNotFound):
        env.client.list_runs(after="01930000-0000-7000-8000-000000000000")


def test_fan_in_with_three_roots(make_env: MakeEnv) -> None:
    wf = Workflow("three_roots", triggers=[manual("go")])

    @wf.step
    def a() -> dict[str, Any]:
        return {"a": 1}

    @wf.step
    def b() -> dict[str, Any]:
        return {"b": 2}

    @wf.step
    def c() -> dict[str, Any]:
        return {"c": 3}

    @wf.step(after=[a, b, c])
    def total(a: int, b: int, c: int) -> dict[str, Any]:
        return {"total": a + b + c}

    env = make_env(wf, run_immediately=False)
    run = env.start_run("three_roots")
    jobs = [job for _, job in env.executor.pending]
    assert sorted(job["step"] for job in jobs) == ["a", "b", "c"]
    env.client.perform(jobs[0])
    env.client.perform(jobs[1])
    waiting = env.client.inspect_run(run.id, include_history=True)
    states = {s.step: s.status for s in waiting.steps or ()}
    assert states == {"a": "completed", "b": "completed", "c": "pending", "total": "waiting"}
    explanation = env.client.explain_run(run.id)
    assert explanation.reason == "waiting_for_dependencies"
    assert explanation.details["waiting_on"] == ["c"]
    env.run_until_idle()
    assert env.client.inspect_run(run.id).context == {"a": 1, "b": 2, "c": 3, "total": 6}


def test_a_step_left_running_is_taken_over_after_the_stale_timeout(make_env: MakeEnv) -> None:
    calls: list[int] = []
    wf = Workflow("stuck", triggers=[manual("go")])

    @wf.step
    def work() -> dict[str, Any]:
        calls.append(1)
        return {"work": len(calls)}

    wf.chain(work, COMPLETE)
    env = make_env(wf, run_immediately=False, stale_step_timeout=300)
    run = env.start_run("stuck")
    ((_, job),) = env.executor.pending
    # A worker claimed the step and died: the step run stays running with an open attempt.
    with env.client.runtime.transaction() as tx:
        step_run, _ = step_start_store.begin_step(tx, run.id, "work", {})
        attempt_store.begin_attempt(tx, step_run.id)
    assert env.client.perform(job) == "skipped"
    env.clock.advance(299)
    assert env.client.perform(job) == "skipped"
    env.clock.advance(1)
    assert env.client.perform(job) == "executed"
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    work_run = done.step_run("work")
    assert work_run is not None
    attempts = work_run.attempts or ()
    assert [(a.number, a.status) for a in attempts] == [(1, "abandoned"), (2, "completed")]
    assert attempts[0].error is not None
    assert (attempts[0].error["kind"], attempts[0].error["code"]) == (
        "abandoned",
        "stale_running_step",
    )
    assert calls == [1]


def test_a_queue_that_knows_the_worker_died_reclaims_at_once(make_env: MakeEnv) -> None:
    wf = Workflow("reclaimed", triggers=[manual("go")])

    @wf.step
    def work() -> dict[str, Any]:
        return {"work": "done"}

    wf.chain(work, COMPLETE)
    env = make_env(wf, run_immediately=False)
    run = env.start_run("reclaimed")
    with env.client.runtime.transaction() as tx:
        step_run, _ = step_start_store.begin_step(tx, run.id, "work", {})
        attempt_store.begin_attempt(tx, step_run.id)
    delivery = Delivery(reclaim=True)
    assert (
        execution.execute_step(env.client.runtime, run.id, "work", delivery=delivery) == "executed"
    )
    done = env.client.inspect_run(run.id, include_history=True)
    work_run = done.step_run("work")
    assert work_run is not None
    assert [a.status for a in work_run.attempts or ()] == ["abandoned", "completed"]
