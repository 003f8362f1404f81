"""Compensation callbacks are claimed like steps: one delivery runs each, dead ones taken over."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, StepContext, Workflow, manual
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.jobs import Job
from squidmesh_sdk.testing import FakeClock

WORKER = "compensation-tests"


class Calls:
    """What the callbacks saw, from any thread; ``crash_once`` makes one call die like a worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, int]] = []
        self.crash_once: set[str] = set()

    def record(self, name: str, ctx: StepContext) -> None:
        with self.lock:
            self.seen.append((name, ctx.attempt))
            crash = name in self.crash_once
            self.crash_once.discard(name)
        if crash:
            # Not an Exception: like a process that dies, nothing after the call is recorded.
            raise SystemExit("the worker died inside the callback")
        time.sleep(0.05)  # long enough for concurrent deliveries to overlap

    def count(self) -> Counter[str]:
        with self.lock:
            return Counter(name for name, _ in self.seen)


def _saga(calls: Calls) -> Workflow:
    wf = Workflow("claimed_saga", triggers=[manual("go")])

    @wf.step
    def reserve() -> dict[str, Any]:
        return {"reservation": "r-1"}

    @reserve.compensate
    def release(ctx: StepContext) -> dict[str, Any]:
        calls.record("release", ctx)
        return {"released": True}

    @wf.step
    def charge() -> dict[str, Any]:
        return {"charge": "c-1"}

    @charge.compensate
    def refund(ctx: StepContext) -> dict[str, Any]:
        calls.record("refund", ctx)
        return {"refunded": True}

    @wf.step
    def ship() -> None:
        raise ValueError("no courier")

    wf.chain(reserve, charge, ship, COMPLETE)
    return wf


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(database_url: str, calls: Calls, clock: FakeClock) -> Iterator[Client]:
    with Client(
        database_url,
        [_saga(calls)],
        executor=DatabaseExecutor(),
        clock=clock,
        stale_step_timeout=300,
    ) as instance:
        yield instance


def _failed_run_and_its_compensation_job(client: Client) -> tuple[str, Job]:
    """Deliver the step jobs until the run fails; return it and its (unperformed) rollback job."""
    run = client.start_run("claimed_saga")
    while True:
        with client.runtime.transaction() as tx:
            (job,) = claim_store.claim(tx, worker=WORKER, queues=["default"], limit=1, lease=60)
        if job.kind == "compensation":
            assert client.inspect_run(run.id).status == "failed"
            return run.id, job
        client.perform(job.payload)
        with client.runtime.transaction() as tx:
            job_store.complete(tx, job.id, worker=WORKER)


def _compensation(client: Client, run_id: str, step: str) -> dict[str, Any]:
    step_run = client.inspect_run(run_id, include_history=True).step_run(step)
    assert step_run is not None
    assert step_run.recovery is not None
    return dict(step_run.recovery["compensation"])


def test_eight_concurrent_deliveries_run_each_callback_once(client: Client, calls: Calls) -> None:
    run_id, job = _failed_run_and_its_compensation_job(client)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(client.perform(job.payload))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert calls.count() == {"refund": 1, "release": 1}
    assert [name for name, _ in calls.seen] == ["refund", "release"]  # newest first
    assert len(outcomes) == 8
    assert set(outcomes) <= {"compensated", "skipped"}
    for step in ("charge", "reserve"):
        state = _compensation(client, run_id, step)
        assert (state["status"], state["attempt"]) == ("completed", 1)
    # Once finished, another duplicate is a no-op too.
    assert client.perform(job.payload) == "compensated"
    assert calls.count() == {"refund": 1, "release": 1}
    run = client.inspect_run(run_id)
    assert run.status == "failed"
    assert run.last_error is not None
    assert run.last_error["message"] == "no courier"


def test_a_duplicate_leaves_a_running_callback_alone_until_it_may_be_taken_over(
    client: Client, calls: Calls, clock: FakeClock
) -> None:
    run_id, job = _failed_run_and_its_compensation_job(client)
    calls.crash_once.add("refund")
    with pytest.raises(SystemExit):
        client.perform(job.payload)  # dies inside the first callback
    assert _compensation(client, run_id, "charge")["status"] == "running"

    # A duplicate while the first delivery may still be alive: nothing runs.
    assert client.perform(job.payload) == "skipped"
    assert calls.count() == {"refund": 1}

    # Past stale_step_timeout the callback is taken over and the rollback finishes.
    clock.advance(timedelta(seconds=301))
    assert client.perform(job.payload) == "compensated"
    assert calls.seen == [("refund", 1), ("refund", 2), ("release", 1)]
    refund = _compensation(client, run_id, "charge")
    assert (refund["status"], refund["attempt"]) == ("completed", 2)
    assert refund["taken_over"]["reason"] == "stale_running_step"
    assert _compensation(client, run_id, "reserve")["status"] == "completed"


def test_a_redelivery_after_a_lost_worker_takes_the_callback_over_at_once(
    client: Client, calls: Calls
) -> None:
    run_id, job = _failed_run_and_its_compensation_job(client)
    calls.crash_once.add("refund")
    with pytest.raises(SystemExit):
        client.perform(job.payload)
    assert client.perform(job.payload, redelivered=True) == "compensated"
    assert calls.seen == [("refund", 1), ("refund", 2), ("release", 1)]
    refund = _compensation(client, run_id, "charge")
    assert (refund["status"], refund["attempt"]) == ("completed", 2)
    assert refund["taken_over"]["reason"] == "worker_lost"


def test_a_failed_callback_is_not_run_again_by_a_duplicate(database_url: str) -> None:
    ran: list[str] = []
    wf = Workflow("failing_undo", triggers=[manual("go")])

    @wf.step
    def first() -> dict[str, Any]:
        return {"a": 1}

    @first.compensate
    def undo_first() -> None:
        ran.append("undo_first")
        raise RuntimeError("cannot undo")

    @wf.step
    def second() -> None:
        raise ValueError("second broke")

    wf.chain(first, second, COMPLETE)
    with Client(database_url, [wf], executor=DatabaseExecutor()) as client:
        run = client.start_run(wf)
        for _ in range(3):
            with client.runtime.transaction() as tx:
                (job,) = claim_store.claim(tx, worker=WORKER, queues=["default"], limit=1, lease=60)
            client.perform(job.payload)
            with client.runtime.transaction() as tx:
                job_store.complete(tx, job.id, worker=WORKER)
            if job.kind == "compensation":
                break
        assert ran == ["undo_first"]
        assert client.perform(job.payload) == "compensated"
        assert ran == ["undo_first"]
        failed = client.inspect_run(run.id)
        assert failed.last_error is not None
        (failure,) = failed.last_error["details"]["compensation_failures"]
        assert (failure["step"], failure["message"]) == ("first", "cannot undo")
        assert failed.last_error["cause"]["message"] == "second broke"
