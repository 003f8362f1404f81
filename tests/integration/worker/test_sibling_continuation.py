"""A worker that finishes a fan-out's branch goes on with a sibling branch still queued.

The transaction that records a branch's outcome queues nothing for its worker (the join waits
for the other branches), so the worker would go back to the queue and claim, in claim order,
whatever is oldest: often another run's first step. Instead, that transaction leases one of the
run's queued steps to the worker and claims it, as it does for a chain's next step: a run that
started is finished first, and its branches skip a claim each. Only jobs a claim would hand
over unchanged qualify (same queue, same concurrency key or none, never rescued).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk import (
    Client,
    ConcurrencyLimit,
    DatabaseExecutor,
    StepContext,
    Worker,
    Workflow,
    manual,
)
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import schema
from tests.integration.worker.conftest import settled, wait_until

_executed: list[tuple[str, str]] = []
_executed_lock = threading.Lock()


def _record(run_id: str, step: str) -> None:
    with _executed_lock:
        _executed.append((run_id, step))


def _fan_out() -> Workflow:
    wf = Workflow("sibling_fan_out", triggers=[manual("go")])

    @wf.step()
    def root(ctx: StepContext) -> dict[str, Any]:
        _record(ctx.run_id, "root")
        return {"root": 1}

    for index in range(4):

        @wf.step(name=f"branch_{index}", after=["root"])
        def branch(ctx: StepContext, index: int = index) -> dict[str, Any]:
            _record(ctx.run_id, f"branch_{index}")
            return {f"branch_{index}": 1}

    @wf.step(after=[f"branch_{index}" for index in range(4)])
    def join(ctx: StepContext) -> dict[str, Any]:
        _record(ctx.run_id, "join")
        return {"joined": True}

    return wf


@pytest.fixture
def client(database_url: str) -> Iterator[Client]:
    """A database-queue client holding the fan-out workflow."""
    _executed.clear()
    with Client(database_url, [_fan_out()], executor=DatabaseExecutor(), observers=[]) as made:
        made.migrate()
        yield made


def test_a_worker_finishes_the_fan_out_it_started_before_taking_another_run(
    client: Client,
) -> None:
    first = client.start_run("sibling_fan_out")
    second = client.start_run("sibling_fan_out")
    worker = Worker(client, concurrency=1, poll_interval=0.05)
    worker.start()
    try:
        wait_until(settled(client, [first, second]), what="both runs settled")
    finally:
        worker.stop()
    assert [client.inspect_run(run.id).status for run in (first, second)] == ["completed"] * 2
    # One thread: the first run's six steps, all of them, then the second run's.
    runs = [run_id for run_id, _ in _executed]
    assert runs == [first.id] * 6 + [second.id] * 6
    steps = [step for run_id, step in _executed if run_id == first.id]
    assert steps[0] == "root"
    assert steps[-1] == "join"
    assert sorted(steps[1:5]) == [f"branch_{index}" for index in range(4)]
    # Every branch ran once, in one attempt each.
    history = client.inspect_run(first.id, include_history=True)
    attempts = {sr.step: [a.number for a in sr.attempts or ()] for sr in history.step_runs or ()}
    assert attempts == {step: [1] for step in ["root", *steps[1:5], "join"]}


def _queue(client: Client, run_id: str, step: str, **columns: Any) -> int:
    """Insert a queued step job for ``run_id`` (as a dispatch would), with ``columns`` set."""
    key = columns.pop("concurrency_key", None)
    new = job_store.NewJob(
        kind="step",
        payload={"run_id": run_id, "step": step},
        queue=columns.pop("queue", "default"),
        run_id=run_id,
        step=step,
        workflow="sibling_fan_out",
        concurrency_key=key,
        concurrency_limit=2 if key is not None else None,
    )
    with client.runtime.transaction() as tx:
        (job_id,) = job_store.enqueue(tx, [new])
        if columns:
            tx.connection.execute(
                sa.update(schema.jobs).where(schema.jobs.c.id == job_id).values(**columns)
            )
    return job_id


def _lease(client: Client, run_id: str, *, key: str | None = None) -> job_store.Job | None:
    with client.runtime.transaction() as tx:
        return job_store.lease_next_of_run(
            tx, run_id, worker="w", lease=30, queue="default", concurrency_key=key
        )


def test_only_jobs_a_claim_would_hand_over_unchanged_are_leased(client: Client) -> None:
    run = client.start_run("sibling_fan_out")
    other = client.start_run("sibling_fan_out")
    with client.database.read() as connection:
        # The runs' first jobs (root): leave them out of this.
        for job in job_store.list_jobs(connection):
            with client.runtime.transaction() as tx:
                tx.connection.execute(sa.delete(schema.jobs).where(schema.jobs.c.id == job.id))
    now = client.runtime.clock.now()
    _queue(client, other.id, "branch_0")  # another run's
    _queue(client, run.id, "branch_1", queue="slow")  # another queue
    _queue(client, run.id, "branch_2", run_at=now + timedelta(hours=1))  # not due
    _queue(client, run.id, "branch_3", rescues=1)  # rescued: its delivery may take over
    _queue(client, run.id, "join", last_error={"message": "boom"})  # a delivery raised
    keyed = _queue(client, run.id, "branch_0", concurrency_key="acme")
    assert _lease(client, run.id) is None
    assert _lease(client, run.id, key="globex") is None
    leased = _lease(client, run.id, key="acme")
    assert leased is not None
    assert (leased.id, leased.status, leased.locked_by, leased.deliveries) == (
        keyed,
        "running",
        "w",
        1,
    )
    assert leased.locked_until is not None
    assert leased.locked_until > now
    # Running now: not leased twice.
    assert _lease(client, run.id, key="acme") is None


def test_a_step_level_concurrency_limit_keeps_its_claim(database_url: str) -> None:
    wf = Workflow("keyed_branches", triggers=[manual("go")])

    @wf.step()
    def root() -> dict[str, Any]:
        return {"root": 1}

    @wf.step(after=["root"], concurrency=ConcurrencyLimit(key="context.root", limit=1))
    def keyed(root: int) -> dict[str, Any]:
        return {"keyed": root}

    @wf.step(after=["root"])
    def plain() -> dict[str, Any]:
        return {"plain": 1}

    @wf.step(after=["keyed", "plain"])
    def join() -> dict[str, Any]:
        return {}

    with Client(database_url, [wf], executor=DatabaseExecutor(), observers=[]) as made:
        made.migrate()
        run = made.start_run("keyed_branches")
        worker = Worker(made, concurrency=1, poll_interval=0.05)
        worker.start()
        try:
            wait_until(settled(made, [run]), what="the run settled")
        finally:
            worker.stop()
        assert made.inspect_run(run.id).status == "completed"
