"""A step's continuation takes over the delivered job's row instead of a new one.

The transaction that records a step's outcome finishes its job and queues the run's next
step for the same worker: the job's row is rewritten into that next job (one statement, where
a delete and an insert were two). Everything a job row means must still hold: the next job is
leased to the worker with a fresh delivery count, and a job whose lease was lost is left to
whoever holds it now.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, Worker
from squidmesh_sdk.port.continuation import continuation
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import runner
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import schema


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


def _deliver(client: Client, worker: Worker, job: job_store.Job) -> object:
    """Perform ``job`` as ``worker`` does (its settlement, a continuation offer); the offer."""
    with continuation(worker.name, 30, ["default"], lambda: True, job.id) as offer:
        delivery = Delivery(settle=worker._settler(job))
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


@pytest.mark.parametrize("left", [21, 19, -1])
def test_a_lease_with_less_than_two_thirds_left_is_renewed(client: Client, left: int) -> None:
    """Of a 30 s lease, 21 s left is kept; 19 s, or none (run out, not yet rescued), renewed.

    Heartbeats renew a lease every third of it: a live worker's lease never has less than
    two thirds left.
    """
    worker, job = _claimed(client)
    with client.runtime.transaction() as tx:
        short = tx.now + timedelta(seconds=left)
        tx.connection.execute(
            sa.update(schema.jobs).where(schema.jobs.c.id == job.id).values(locked_until=short)
        )
    _deliver(client, worker, job)
    (row,) = _jobs(client)
    assert (row.id, row.step, row.locked_by) == (job.id, "step_2", "w")
    if left > 20:
        assert row.locked_until == short
    else:
        assert row.locked_until is not None
        assert row.locked_until >= row.updated_at + timedelta(seconds=30)
