"""Redelivery is harmless: duplicate, stale and interrupted deliveries never run a step twice."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from squidmesh_sdk import (
    COMPLETE,
    DefinitionUnavailable,
    InvalidExecutorPayload,
    InvalidRunId,
    RunNotFound,
    Workflow,
    manual,
)
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store import step_starts as step_start_store
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv


def two_steps(calls: list[str] | None = None, gate: threading.Event | None = None) -> Workflow:
    wf = Workflow("two_steps", triggers=[manual("go")])
    lock = threading.Lock()

    @wf.step
    def first() -> dict[str, Any]:
        with lock:
            if calls is not None:
                calls.append("first")
        if gate is not None:
            assert gate.wait(timeout=60), "the test never released the step"
        return {"first": "done"}

    @wf.step
    def second(first: str) -> dict[str, Any]:
        if calls is not None:
            calls.append("second")
        return {"second": first}

    wf.chain(first, second, COMPLETE)
    return wf


def _attempt_numbers(env: WorkflowEnvironment, run_id: str, step: str) -> list[int]:
    run = env.client.inspect_run(run_id, include_history=True)
    step_run = run.step_run(step)
    return [a.number for a in (step_run.attempts or ())] if step_run else []


def test_eight_concurrent_deliveries_of_one_step_execute_it_once(make_env: MakeEnv) -> None:
    calls: list[str] = []
    gate = threading.Event()
    env = make_env(two_steps(calls, gate), run_immediately=False)
    run = env.start_run("two_steps")
    ((_, job),) = env.executor.pending
    results: queue.Queue[str] = queue.Queue()
    start = threading.Barrier(8)

    def deliver() -> None:
        start.wait()
        try:
            results.put(env.client.perform(job))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertions below
            results.put(f"error: {exc!r}")

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    # Seven deliveries must return while the eighth is still inside the step body.
    losers = [results.get(timeout=60) for _ in range(7)]
    gate.set()
    for thread in threads:
        thread.join(timeout=60)
    winner = results.get(timeout=60)
    assert sorted(losers) == ["skipped"] * 7
    assert winner == "executed"
    assert calls == ["first"]
    assert _attempt_numbers(env, run.id, "first") == [1]
    assert env.client.inspect_run(run.id).current_step == "second"


def test_a_job_for_a_step_that_is_no_longer_current_is_a_no_op(make_env: MakeEnv) -> None:
    calls: list[str] = []
    env = make_env(two_steps(calls), run_immediately=False)
    run = env.start_run("two_steps")
    ((_, first_job),) = env.executor.pending
    assert env.client.perform(first_job) == "executed"
    assert env.client.perform(first_job) == "skipped"
    # The queue still holds the original first job (a redelivery) and the second step's job.
    assert env.run_due() == 2
    assert env.client.perform(first_job) == "skipped"
    assert env.client.inspect_run(run.id).status == "completed"
    assert calls == ["first", "second"]
    assert _attempt_numbers(env, run.id, "first") == [1]


def test_a_job_for_an_undeclared_step_is_refused_not_dropped(make_env: MakeEnv) -> None:
    # The run's version, held here, does not declare the step: the delivery is refused (its
    # queue keeps the job) and nothing is written.
    env = make_env(two_steps(), run_immediately=False)
    run = env.start_run("two_steps")
    with pytest.raises(DefinitionUnavailable, match="needs step 'third'") as refused:
        env.client.perform({"kind": "step", "run_id": run.id, "step": "third"})
    assert (refused.value.step, refused.value.run_id) == ("third", run.id)
    after = env.client.inspect_run(run.id, include_history=True)
    assert after.status == "pending"
    assert all(not sr.attempts for sr in after.step_runs or ())


def test_jobs_naming_missing_or_malformed_runs_raise(make_env: MakeEnv) -> None:
    env = make_env(two_steps())
    missing = "01930000-0000-7000-8000-000000000000"
    with pytest.raises(RunNotFound, match=missing):
        env.client.perform({"kind": "step", "run_id": missing, "step": "first"})
    with pytest.raises(InvalidRunId, match="'42'"):
        env.client.perform({"kind": "step", "run_id": "42", "step": "first"})
    with pytest.raises(InvalidExecutorPayload, match="unknown kind 'email'"):
        env.client.perform({"kind": "email"})


def test_a_completed_step_whose_run_was_not_advanced_is_reconciled(make_env: MakeEnv) -> None:
    calls: list[str] = []
    env = make_env(two_steps(calls), run_immediately=False)
    run = env.start_run("two_steps")
    ((_, first_job),) = env.executor.pending
    # A crash after the step's result was recorded but before the run moved on: write the
    # result through the lower-level stores only.
    with env.client.runtime.transaction() as tx:
        step_run, action = step_start_store.begin_step(tx, run.id, "first", {})
        assert action == "execute"
        attempt = attempt_store.begin_attempt(tx, step_run.id)
        attempt_store.complete_attempt(tx, attempt)
        step_run_store.complete_step(tx, step_run.id, {"first": "from before the crash"})
    assert env.client.perform(first_job) == "reconciled"
    moved = env.client.inspect_run(run.id)
    assert (moved.status, moved.current_step) == ("running", "second")
    assert moved.context == {"first": "from before the crash"}
    assert calls == []
    assert _attempt_numbers(env, run.id, "first") == [1]
    env.run_due()
    assert env.client.inspect_run(run.id).context == {
        "first": "from before the crash",
        "second": "from before the crash",
    }
    assert calls == ["second"]


def test_a_run_cancelled_between_steps_skips_its_queued_step(make_env: MakeEnv) -> None:
    calls: list[str] = []
    env = make_env(two_steps(calls), run_immediately=False)
    run = env.start_run("two_steps")
    ((_, first_job),) = env.executor.pending
    assert env.client.perform(first_job) == "executed"
    with env.client.runtime.transaction() as tx:
        cancelled, _ = run_store.cancel_run(tx, run.id)
    # No step body was running: cancelled at once, not left cancelling until a delivery.
    assert cancelled.status == "cancelled"
    # Queued: the first step's job (already performed above) and the second step's job.
    assert env.run_due() == 2
    done = env.client.inspect_run(run.id)
    assert (done.status, done.current_step) == ("cancelled", None)
    assert calls == ["first"]
    assert env.executor.pending == []


def test_a_step_finishing_after_cancellation_records_its_result_and_stops(
    make_env: MakeEnv,
) -> None:
    gate = threading.Event()
    env = make_env(two_steps(gate=gate), run_immediately=False)
    run = env.start_run("two_steps")
    ((_, first_job),) = env.executor.pending
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(env.client.perform(first_job)))
    worker.start()
    while env.client.inspect_run(run.id).status != "running":
        threading.Event().wait(0.01)
    with env.client.runtime.transaction() as tx:
        run_store.cancel_run(tx, run.id)
    gate.set()
    worker.join(timeout=60)
    assert outcome == ["executed"]
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert done.context == {"first": "done"}
    assert [(sr.step, sr.status) for sr in done.step_runs or ()] == [("first", "completed")]
    # Nothing was dispatched after the step: only its own (already performed) job is queued.
    assert [job for _, job in env.executor.pending] == [first_job]


def _deliver_concurrently(env: WorkflowEnvironment, job: dict[str, Any], count: int) -> list[str]:
    results: queue.Queue[str] = queue.Queue()
    start = threading.Barrier(count)

    def deliver() -> None:
        start.wait()
        try:
            results.put(env.client.perform(job))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertions below
            results.put(f"error: {exc!r}")

    threads = [threading.Thread(target=deliver) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(results.get(timeout=60) for _ in range(count))


def test_eight_deliveries_of_a_map_step_start_its_elements_once(make_env: MakeEnv) -> None:
    wf = Workflow("map_once", triggers=[manual("go")])

    @wf.step
    def plan() -> dict[str, Any]:
        return {"items": [1, 2, 3]}

    @wf.step(map_over="items")
    def each(item: int) -> dict[str, Any]:
        return {"item": item}

    wf.chain(plan, each, COMPLETE)
    env = make_env(wf, run_immediately=False)
    run = env.start_run("map_once")
    assert env.executor.run_next()  # plan
    ((_, job),) = env.executor.pending
    assert job["step"] == "each"
    outcomes = _deliver_concurrently(env, job, 8)
    assert outcomes == ["executed"] + ["skipped"] * 7
    # Three element jobs were queued, once each (beside the job delivered by hand above).
    assert sorted(j["step"] for _, j in env.executor.pending) == [
        "each",
        "each[0]",
        "each[1]",
        "each[2]",
    ]
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["each"] == [{"item": 1}, {"item": 2}, {"item": 3}]


def test_eight_deliveries_of_a_wait_timer_end_the_wait_once(make_env: MakeEnv) -> None:
    calls: list[str] = []
    wf = Workflow("timer_once", triggers=[manual("go")])
    hold = wf.wait("hold", duration=60)

    @wf.step
    def after() -> dict[str, Any]:
        calls.append("after")
        return {"after": True}

    wf.chain(hold, after, COMPLETE)
    env = make_env(wf, run_immediately=False)
    run = env.start_run("timer_once")
    assert env.executor.run_next()  # the wait starts: its timer is queued
    ((_, timer),) = env.executor.pending
    env.clock.advance(60)
    outcomes = _deliver_concurrently(env, timer, 8)
    assert outcomes == ["executed"] + ["skipped"] * 7
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert calls == ["after"]
    hold_run = done.step_run("hold")
    assert hold_run is not None
    assert [a.status for a in hold_run.attempts] == ["completed"]
