"""A delivery that hands its worker nothing claims the worker's next job in its transaction.

When a step's outcome queues nothing for its worker (the run completed, or waits), the worker
thread is about to be free and would claim its next job in a transaction of its own. That
claim (the same statement, with priorities and flow control) is made in the outcome's
transaction instead, along with the claimed job's step: a worker draining a queue of short
runs commits once per step. Claims never wait for a run's lock: a transaction holding another
run's lock must not, and the delivery claims the step itself when it could not.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from datetime import timedelta
from functools import partial

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, DatabaseExecutor, Worker
from squidmesh_sdk.port.continuation import Continuation, continuation
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import claiming, execution, runner
from squidmesh_sdk.runtime.recording import Claim
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import schema
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.prepared import Prepared
from tests.integration.worker.app import WORKFLOWS, make_client
from tests.integration.worker.conftest import (
    Completions,
    attempts_by_step,
    busy_wakes,
    wait_until,
)


def _jobs(client: Client) -> list[job_store.Job]:
    with client.database.read() as connection:
        return job_store.list_jobs(connection)


def _last_step_job(client: Client, worker: Worker) -> tuple[job_store.Job, object | None]:
    """Perform steps 1 to 4 of the first queued ``five_steps`` run; step 5's job and claim."""
    with client.runtime.transaction() as tx:
        (job,) = claim_store.claim(tx, worker=worker.name, queues=["default"], limit=1, lease=30)
    claim: object | None = None
    while job.step != "step_5":
        with continuation(
            worker.name, 30, ["default"], lambda: True, job.id, delivered=job
        ) as offer:
            delivery = Delivery(settle=worker._settler(job), claim=claim)
            runner.perform(client.runtime, job.payload, delivery=delivery)
        assert offer.job is not None
        job, claim = offer.job, offer.claim
    return job, claim


def _offer_claiming_next(
    worker: Worker, job: job_store.Job, *, accepting: bool = True
) -> AbstractContextManager[Continuation]:
    """The offer ``worker`` makes while delivering ``job``: it may claim the worker's next job."""
    return continuation(
        worker.name,
        30,
        ["default"],
        lambda: accepting,
        job.id,
        delivered=job,
        claim_next=partial(worker._claim_next, object()),
    )


def _finish_first_run(client: Client, worker: Worker, *, accepting: bool = True) -> Continuation:
    """Perform the first queued run's last step as ``worker`` does; the delivery's offer.

    Steps 1 to 4 are performed first (:func:`_last_step_job`); step 5's delivery may claim
    the worker's next job (``accepting``: whether the worker still takes work).
    """
    job, claim = _last_step_job(client, worker)
    with _offer_claiming_next(worker, job, accepting=accepting) as offer:
        delivery = Delivery(settle=worker._settler(job), claim=claim)
        assert runner.perform(client.runtime, job.payload, delivery=delivery) == "executed"
    return offer


def test_the_last_step_s_transaction_claims_the_worker_s_next_job_and_its_step(
    client: Client,
) -> None:
    worker = Worker(client, concurrency=1, name="w")
    first = client.start_run("five_steps")
    second = client.start_run("five_steps")
    offer = _finish_first_run(client, worker)
    # Committed together: the first run completed, the second run's job leased to the same
    # worker and its first step started (attempt 1), ready for the worker to run its body.
    assert client.inspect_run(first.id).status == "completed"
    (leased,) = _jobs(client)
    assert (leased.run_id, leased.step, leased.status, leased.locked_by) == (
        second.id,
        "step_1",
        "running",
        "w",
    )
    assert offer.job is not None
    assert offer.job.id == leased.id
    assert isinstance(offer.claim, Claim)
    assert (offer.claim.run.id, offer.claim.step_run.step) == (second.id, "step_1")
    run = client.inspect_run(second.id, include_history=True)
    (step_run,) = run.step_runs or ()
    assert (step_run.step, step_run.status) == ("step_1", "running")
    assert [a.number for a in step_run.attempts or ()] == [1]
    # The worker performs it with that claim: the second run goes on from there.
    with continuation("w", 30, ["default"], lambda: True, leased.id, delivered=leased) as following:
        delivery = Delivery(settle=worker._settler(leased), claim=offer.claim)
        assert runner.perform(client.runtime, leased.payload, delivery=delivery) == "executed"
    assert following.job is not None
    assert following.job.step == "step_2"


_NULL_STATUS = Prepared(
    lambda _: (
        schema.runs.update()
        .where(schema.runs.c.id == sa.bindparam("run_id"))
        .values(status=sa.bindparam("status"))
    )
)


@pytest.mark.parametrize("when", ["at_once", "when_sent"])
def test_a_next_job_claim_that_fails_costs_the_outcome_nothing(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, when: str
) -> None:
    worker = Worker(client, concurrency=1, name="w")
    first = client.start_run("five_steps")
    second = client.start_run("five_steps")
    job, claim = _last_step_job(client, worker)
    attempts: list[str] = []

    def failing_claim(tx: Transaction, **_: object) -> list[job_store.Job]:
        attempts.append(tx.connection.dialect.name)
        if when == "when_sent":
            # A write the claim sends ahead (on PostgreSQL held back until a later statement
            # or the commit) that the database refuses (NOT NULL).
            _NULL_STATUS.send(tx.connection, {"run_id": second.id, "status": None})
            return []
        # A statement that fails at once: on PostgreSQL it aborts the transaction too.
        tx.connection.execute(sa.text("SELECT 1 / 0"))
        raise AssertionError("unreachable")

    monkeypatch.setattr(claim_store, "claim", failing_claim)
    with _offer_claiming_next(worker, job) as offer:
        delivery = Delivery(settle=worker._settler(job), claim=claim)
        assert runner.perform(client.runtime, job.payload, delivery=delivery) == "executed"

    # The step succeeded and its run completed, written again without the claim (tried once).
    assert len(attempts) == 1
    run = client.inspect_run(first.id, include_history=True)
    assert run.status == "completed"
    last = [step_run for step_run in run.step_runs or () if step_run.step == "step_5"]
    assert [(a.number, a.status) for a in last[0].attempts or ()] == [(1, "completed")]
    assert "claiming the worker's next job with a step outcome failed" in caplog.text
    # The second run's job still waits in the queue for the worker's loop.
    assert offer.job is None
    (queued,) = _jobs(client)
    assert (queued.run_id, queued.status, queued.locked_by) == (second.id, "queued", None)


def _second_run_claimed_by_a_worker_that_dies(client: Client) -> tuple[str, Worker]:
    """Run two ``five_steps`` runs on worker "w" until the second's step 1 is claimed ahead.

    The last step of the first run claims the second run's job for "w" and starts its step
    1 (attempt 1); "w" then dies before running it (nothing performs that job). Returns the
    second run's id and another worker, "w2".
    """
    worker = Worker(client, concurrency=1, name="w")
    client.start_run("five_steps")
    second = client.start_run("five_steps")
    offer = _finish_first_run(client, worker)
    assert isinstance(offer.claim, Claim)
    explained = client.explain_run(second.id)
    assert (explained.status, explained.reason, explained.step) == (
        "running",
        "step_running",
        "step_1",
    )
    return second.id, Worker(client, concurrency=1, name="w2")


def _rescue_and_deliver(client: Client, worker: Worker) -> None:
    """Let the dead worker's lease run out, rescue its job, and deliver it as ``worker``."""
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.jobs).values(locked_until=tx.now - timedelta(seconds=1))
        )
    with client.runtime.transaction() as tx:
        (rescued,) = job_store.rescue_expired(tx)
    with client.runtime.transaction() as tx:
        (job,) = claim_store.claim(tx, worker=worker.name, queues=["default"], limit=1, lease=30)
    assert (job.id, job.rescues) == (rescued.id, 1)
    worker._deliver(job)


def test_a_worker_dying_with_its_next_job_claimed_loses_nothing(client: Client) -> None:
    run_id, other = _second_run_claimed_by_a_worker_that_dies(client)
    _rescue_and_deliver(client, other)
    # Taken over: attempt 1 (started by the dead worker's claim) abandoned, attempt 2 ran.
    statuses = attempts_by_step(client, run_id)
    assert statuses["step_1"] == ["abandoned", "completed"]
    assert client.explain_run(run_id).step == "step_2"


def test_a_run_cancelled_while_its_claimed_step_waits_for_a_dead_worker_is_cancelled(
    client: Client,
) -> None:
    run_id, other = _second_run_claimed_by_a_worker_that_dies(client)
    assert client.cancel_run(run_id).status == "cancelling"
    explained = client.explain_run(run_id)
    assert (explained.reason, explained.details["running_steps"]) == ("cancelling", ["step_1"])
    # The dead worker's job comes back once its lease expires, and its delivery ends the run.
    _rescue_and_deliver(client, other)
    run = client.inspect_run(run_id)
    assert run.status == "cancelled"
    assert attempts_by_step(client, run_id) == {"step_1": ["abandoned"]}
    assert _jobs(client) == []


class _Died(BaseException):
    """The worker's process ending where it is raised (nothing catches it on the way out)."""


def _run_whose_worker_dies_after_a_failed_next_job_claim(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Worker]:
    """A one-run queue: step 5's outcome fails to claim the next job, then "w" dies.

    The outcome's transaction rolled back with the failed claim; "w" dies before writing it
    again. Returns the run's id and another worker, "w2".
    """
    worker = Worker(client, concurrency=1, name="w")
    run = client.start_run("five_steps")
    job, claim = _last_step_job(client, worker)

    def failing_claim(tx: Transaction, **_: object) -> list[job_store.Job]:
        tx.connection.execute(sa.text("SELECT 1 / 0"))
        raise AssertionError("unreachable")

    writes: list[int] = []
    apply_and_settle = execution._apply_and_settle

    def dies_before_writing_again(*args: object) -> None:
        writes.append(1)
        if len(writes) > 1:
            raise _Died
        apply_and_settle(*args)

    monkeypatch.setattr(claim_store, "claim", failing_claim)
    monkeypatch.setattr(execution, "_apply_and_settle", dies_before_writing_again)
    delivery = Delivery(settle=worker._settler(job), claim=claim)
    with (
        _offer_claiming_next(worker, job),
        pytest.raises(_Died),
    ):
        runner.perform(client.runtime, job.payload, delivery=delivery)
    monkeypatch.undo()
    assert len(writes) == 2
    # Nothing of the outcome was written: step 5 is still running, as its claim left it.
    explained = client.explain_run(run.id)
    assert (explained.status, explained.reason, explained.step) == (
        "running",
        "step_running",
        "step_5",
    )
    (leased,) = _jobs(client)
    assert (leased.step, leased.locked_by) == ("step_5", "w")
    return run.id, Worker(client, concurrency=1, name="w2")


def test_a_worker_dying_after_a_failed_next_job_claim_loses_nothing(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, other = _run_whose_worker_dies_after_a_failed_next_job_claim(client, monkeypatch)
    _rescue_and_deliver(client, other)
    # Taken over: step 5 runs again in attempt 2 and the run completes.
    assert attempts_by_step(client, run_id)["step_5"] == ["abandoned", "completed"]
    assert client.inspect_run(run_id).status == "completed"
    assert _jobs(client) == []


def test_a_run_cancelled_after_its_worker_died_on_a_failed_next_job_claim_is_cancelled(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, other = _run_whose_worker_dies_after_a_failed_next_job_claim(client, monkeypatch)
    assert client.cancel_run(run_id).status == "cancelling"
    explained = client.explain_run(run_id)
    assert (explained.reason, explained.details["running_steps"]) == ("cancelling", ["step_5"])
    _rescue_and_deliver(client, other)
    assert client.inspect_run(run_id).status == "cancelled"
    assert attempts_by_step(client, run_id)["step_5"] == ["abandoned"]
    assert _jobs(client) == []


def test_a_worker_that_stops_taking_work_claims_nothing_more(client: Client) -> None:
    worker = Worker(client, concurrency=1, name="w")
    client.start_run("five_steps")
    second = client.start_run("five_steps")
    offer = _finish_first_run(client, worker, accepting=False)
    assert offer.job is None
    (queued,) = _jobs(client)
    assert (queued.run_id, queued.status, queued.locked_by) == (second.id, "queued", None)


@pytest.mark.postgres
def test_a_claim_does_not_wait_for_a_run_another_transaction_holds(
    postgres_database_url: str,
) -> None:
    # PostgreSQL alone: SQLite has no row locks (its write transactions are exclusive).
    with make_client(postgres_database_url) as client:
        _claim_while_the_run_is_held(client)


def _claim_while_the_run_is_held(client: Client) -> None:
    run = client.start_run("five_steps")
    holding = threading.Event()
    release = threading.Event()

    def hold_the_run() -> None:
        with client.database.engine.begin() as connection:
            connection.execute(
                sa.select(schema.runs.c.id)
                .where(schema.runs.c.id == sa.literal(run.id, sa.Uuid))
                .with_for_update()
            )
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_run)
    holder.start()
    try:
        assert holding.wait(10)

        def claim(tx: Transaction) -> tuple[object | None, float]:
            tx.connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            started = time.monotonic()
            claimed = claiming.claim_step(client.runtime, tx, run.id, "step_1")
            return claimed, time.monotonic() - started

        with client.runtime.transaction() as tx:
            claimed, waited = claim(tx)
        # At once, and the transaction is still usable (it committed).
        assert claimed is None
        assert waited < 5
    finally:
        release.set()
        holder.join()
    # The delivery then claims the step itself, holding nothing else.
    with client.runtime.transaction() as tx:
        assert isinstance(claiming.claim_step(client.runtime, tx, run.id, "step_1"), Claim)


def test_a_job_queued_while_every_thread_was_busy_is_claimed_when_one_ends(
    database_url: str,
) -> None:
    # The worker's only thread ends a run whose last claim found nothing; before the thread
    # is free, another run is started: its job's wake finds no free thread, so the loop
    # claims nothing. The thread's end then owes the loop that claim (without it, the job
    # would wait for the 60 s poll).
    first_completed = threading.Event()

    def hold_the_thread(_run_id: str) -> None:
        first_completed.set()
        woken_while_busy.wait(10)  # the loop woke for the new job while the thread is busy

    completions = Completions(hold_the_thread)
    with (
        Client(
            database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=[completions]
        ) as client,
        Worker(client, concurrency=1, poll_interval=60, lease=60) as worker,
    ):
        woken_while_busy = busy_wakes(worker)
        client.start_run("five_steps")
        assert first_completed.wait(10)
        second = client.start_run("five_steps")
        wait_until(lambda: second.id in completions.completed, timeout=10, what="the second run")
        assert woken_while_busy.is_set()
