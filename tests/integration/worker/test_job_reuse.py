"""A step's continuation takes over the delivered job's row instead of a new one.

The transaction that records a step's outcome finishes its job and queues the run's next
step for the same worker: the job's row is rewritten into that next job (one statement, where
a delete and an insert were two). Everything a job row means must still hold: the next job is
leased to the worker with a fresh delivery count, and a job whose lease was lost is left to
whoever holds it now.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, DatabaseExecutor, Worker
from squidmesh_sdk.frozen import evolve
from squidmesh_sdk.port.continuation import continuation
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import runner
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import schema
from squidmesh_sdk.testing import FakeClock
from tests.integration.worker.app import WORKFLOWS


def _jobs(client: Client) -> list[job_store.Job]:
    with client.database.read() as connection:
        return job_store.list_jobs(connection)


def _claimed(client: Client) -> tuple[Worker, job_store.Job]:
    """A worker ``w`` and the first job of a new ``five_steps`` run, claimed for it (30 s)."""
    worker = Worker(client, concurrency=1, name="w")
    client.start_run("five_steps")
    with client.runtime.transaction() as tx:
        (job,) = claim_store.claim(tx, worker="w", queues=["default"], limit=1, lease=30)
    return worker, job


def _deliver(
    client: Client, worker: Worker, job: job_store.Job, claim: object | None = None
) -> object:
    """Perform ``job`` as ``worker`` does (its settlement, a continuation offer); the offer.

    ``claim``: the step's claim made ahead, by the transaction that handed ``job`` over.
    """
    offered = continuation(worker.name, 30, ["default"], lambda: True, job.id, delivered=job)
    with offered as offer:
        delivery = Delivery(settle=worker._settler(job), claim=claim)
        assert runner.perform(client.runtime, job.payload, delivery=delivery) == "executed"
        assert delivery.settled
    return offer


def test_the_next_step_s_job_is_the_delivered_job_s_row_rewritten(client: Client) -> None:
    worker, job = _claimed(client)
    assert job.run_id is not None
    run = client.inspect_run(job.run_id)
    # As if delivered before: the rewritten row must not inherit its count, rescue or error.
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.jobs)
            .where(schema.jobs.c.id == job.id)
            .values(deliveries=3, last_error={"message": "earlier"})
        )
    offer = _deliver(client, worker, job)
    assert offer.job is not None  # type: ignore[attr-defined]
    assert (offer.job.id, offer.job.step) == (job.id, "step_2")  # type: ignore[attr-defined]
    (row,) = _jobs(client)
    assert (row.id, row.run_id, row.step, row.status, row.locked_by) == (
        job.id,
        run.id,
        "step_2",
        "running",
        "w",
    )
    assert (row.deliveries, row.rescues, row.last_error) == (1, 0, None)
    assert row.payload["step"] == "step_2"
    assert row.locked_until is not None
    assert row.locked_until > row.updated_at  # type: ignore[operator]


def test_a_job_whose_lease_was_lost_is_left_alone_and_the_next_job_inserted(
    client: Client,
) -> None:
    worker, job = _claimed(client)
    # The lease ran out while the step ran: a rescue queued the job again.
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.jobs)
            .where(schema.jobs.c.id == job.id)
            .values(locked_until=tx.now - timedelta(seconds=1))
        )
    with client.runtime.transaction() as tx:
        assert [rescued.id for rescued in job_store.rescue_expired(tx)] == [job.id]
    offer = _deliver(client, worker, job)
    assert offer.job is not None  # type: ignore[attr-defined]
    assert offer.job.id != job.id  # type: ignore[attr-defined]
    rescued, inserted = _jobs(client)
    assert (rescued.id, rescued.step, rescued.status, rescued.rescues) == (
        job.id,
        "step_1",
        "queued",
        1,
    )
    assert (inserted.step, inserted.status, inserted.locked_by) == ("step_2", "running", "w")
    # The inserted job is leased from the outcome's commit: the worker knows it so.
    assert offer.job.locked_until == inserted.locked_until  # type: ignore[attr-defined]


def test_the_rewritten_row_keeps_its_due_time_creation_and_a_lease_with_time_left(
    client: Client,
) -> None:
    """Only columns no index covers change (the update can be made in place)."""
    worker, job = _claimed(client)
    (claimed,) = _jobs(client)
    _deliver(client, worker, job)
    (row,) = _jobs(client)
    assert row.step == "step_2"
    assert (row.run_at, row.inserted_at, row.locked_until) == (
        claimed.run_at,
        claimed.inserted_at,
        claimed.locked_until,
    )
    assert row.updated_at > claimed.updated_at


@pytest.fixture
def clocked(database_url: str) -> Iterator[tuple[Client, FakeClock]]:
    """A database-queue client whose time moves only when the test says."""
    clock = FakeClock(datetime.now(UTC))
    with Client(database_url, WORKFLOWS, executor=DatabaseExecutor(), clock=clock) as instance:
        yield instance, clock


@pytest.mark.parametrize("left", [21, 19, -1])
def test_a_lease_with_less_than_two_thirds_left_is_renewed(
    clocked: tuple[Client, FakeClock], left: int
) -> None:
    """Of a 30 s lease, 21 s left is kept; 19 s, or none (run out, not yet rescued), renewed.

    Heartbeats renew a lease every third of it: a live worker's lease never has less than
    two thirds left. What is left is counted from what the worker knows of the lease (its
    claim here), which heartbeats only ever extend.
    """
    client, clock = clocked
    worker, job = _claimed(client)
    assert job.locked_until == clock.now() + timedelta(seconds=30)
    clock.advance(30 - left)
    _deliver(client, worker, job)
    (row,) = _jobs(client)
    assert (row.id, row.step, row.locked_by) == (job.id, "step_2", "w")
    if left > 20:
        assert row.locked_until == job.locked_until
    else:
        assert row.locked_until == clock.now() + timedelta(seconds=30)


def test_the_renewal_is_decided_from_what_the_worker_knows_of_the_lease(
    clocked: tuple[Client, FakeClock],
) -> None:
    """A heartbeat extended the row behind the delivery: the claim's lease still decides.

    Claimed with 30 s, extended 5 s later to 35 s from the claim; 11 s after the claim the
    worker knows of 19 s left (the row has 24): renewed to 30 s from then. The worker's
    knowledge is never more than the row holds, so deciding from it only renews sooner.
    """
    client, clock = clocked
    worker, job = _claimed(client)
    assert job.locked_until is not None
    clock.advance(5)
    with client.runtime.transaction() as tx:
        assert job_store.extend_leases(tx, worker="w", job_ids=[job.id], lease=30) == 1
    clock.advance(6)
    _deliver(client, worker, job)
    (row,) = _jobs(client)
    assert row.step == "step_2"
    assert row.locked_until == clock.now() + timedelta(seconds=30)


def test_the_handed_over_job_carries_the_lease_its_row_keeps(
    clocked: tuple[Client, FakeClock],
) -> None:
    """The next rewrite decides from it: a kept lease is not taken for a renewed one.

    Step 2's job keeps step 1's lease (21 s left when step 1 ends); 11 s later step 2 ends
    with 10 s left, which the rewrite into step 3's job must renew.
    """
    client, clock = clocked
    worker, job = _claimed(client)
    clock.advance(9)
    offer = _deliver(client, worker, job)
    second = offer.job  # type: ignore[attr-defined]
    assert second.step == "step_2"
    assert second.locked_until == job.locked_until
    clock.advance(11)
    _deliver(client, worker, second, offer.claim)  # type: ignore[attr-defined]
    (row,) = _jobs(client)
    assert row.step == "step_3"
    assert row.locked_until == clock.now() + timedelta(seconds=30)


@pytest.mark.parametrize("other_run", [False, True])
@pytest.mark.parametrize("other_key", [False, True])
@pytest.mark.parametrize("renew", [False, True])
def test_a_rewrite_sets_each_indexed_column_it_changes(
    client: Client, other_run: bool, other_key: bool, renew: bool
) -> None:
    """Whichever of the run, the concurrency key and the lease change, the row gets them.

    The statement sets only the indexed columns that change (SQLite rewrites an index entry
    for every column an update sets): each combination is its own statement.
    """
    _, job = _claimed(client)
    assert job.run_id is not None
    assert job.locked_until is not None
    other = client.start_run("five_steps")
    held = evolve(
        job,
        concurrency_key="k1",
        locked_until=job.locked_until - timedelta(seconds=25 if renew else 0),
    )
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.jobs).where(schema.jobs.c.id == job.id).values(concurrency_key="k1")
        )
        leased_until = job_store.reuse(
            tx,
            held,
            job_store.NewJob(
                kind="step",
                payload={"run_id": other.id if other_run else job.run_id, "step": "step_2"},
                queue="default",
                run_id=other.id if other_run else job.run_id,
                step="step_2",
                leased_to="w",
                lease=30,
                concurrency_key="k2" if other_key else "k1",
                concurrency_limit=2,
            ),
        )
        now = tx.now
    (row,) = [row for row in _jobs(client) if row.id == job.id]
    assert (row.run_id, row.step, row.status, row.locked_by) == (
        other.id if other_run else job.run_id,
        "step_2",
        "running",
        "w",
    )
    assert (row.concurrency_key, row.concurrency_limit) == ("k2" if other_key else "k1", 2)
    expected = now + timedelta(seconds=30) if renew else job.locked_until
    assert row.locked_until == leased_until == expected


def test_a_rewrite_of_a_row_whose_lease_was_lost_writes_nothing(client: Client) -> None:
    _, job = _claimed(client)
    assert job.run_id is not None
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.jobs).where(schema.jobs.c.id == job.id).values(locked_by="other")
        )
        new = job_store.NewJob(
            kind="step", payload={}, queue="default", run_id=job.run_id, leased_to="w", lease=30
        )
        assert job_store.reuse(tx, job, new) is None
    (row,) = _jobs(client)
    assert (row.step, row.locked_by) == ("step_1", "other")


def test_a_heartbeat_never_shortens_a_lease(clocked: tuple[Client, FakeClock]) -> None:
    """One stamped before a rewrite that renewed the lease, and written after it, keeps it.

    So a lease only grows while its worker holds it: what the worker knows of it (the claim,
    a rewrite) is never more than the row holds.
    """
    client, clock = clocked
    _, job = _claimed(client)
    assert job.locked_until is not None
    with client.runtime.transaction() as tx:  # as late a stamp, with a shorter lease
        assert job_store.extend_leases(tx, worker="w", job_ids=[job.id], lease=10) == 1
    (row,) = _jobs(client)
    assert row.locked_until == job.locked_until
    clock.advance(1)
    with client.runtime.transaction() as tx:
        assert job_store.extend_leases(tx, worker="w", job_ids=[job.id], lease=30) == 1
    (row,) = _jobs(client)
    assert row.locked_until == clock.now() + timedelta(seconds=30)
