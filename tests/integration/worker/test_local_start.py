"""A run started beside an idle worker of the same process goes straight to one of its threads.

The start's transaction leases the run's first job to the worker and starts its first step, as
the worker's claim would have; the worker performs it once that commits. No claim, no wake,
one transaction fewer. A busy worker, a queue with limits, or a failed start leave everything
as before: the job is queued and claimed.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, DatabaseExecutor, InvalidPayload, Worker
from squidmesh_sdk.executors.leases import rescue_expired
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.jobs import Job
from tests.integration.worker.app import WORKFLOWS
from tests.integration.worker.conftest import (
    Completions,
    attempts_by_step,
    busy_wakes,
    wait_until,
)


@contextmanager
def _idle_worker(
    database_url: str, *, lease: float = 60, poll_interval: float = 60, limited: bool = False
) -> Iterator[tuple[Client, Worker, Completions]]:
    """A client and its worker of one thread, idle after a warm-up run (its first loop is done).

    ``limited``: the default queue has a concurrency limit (set before the worker starts).
    A long ``poll_interval`` makes any claim the worker makes one a wake asked for.
    """
    completions = Completions()
    with Client(
        database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=[completions]
    ) as client:
        if limited:
            client.set_queue_limits("default", concurrency=10)
        with Worker(client, concurrency=1, poll_interval=poll_interval, lease=lease) as worker:
            warm_up = client.start_run("five_steps")
            wait_until(lambda: warm_up.id in completions.completed, what="the warm-up run")
            yield client, worker, completions


@contextmanager
def _counting_commits(client: Client) -> Iterator[Iterator[int]]:
    commits = itertools.count()
    counting = lambda _connection: next(commits)  # noqa: E731
    sa.event.listen(client.database.engine, "commit", counting)
    try:
        yield commits
    finally:
        sa.event.remove(client.database.engine, "commit", counting)


def _commits_of_one_run(client: Client, completions: Completions) -> int:
    with _counting_commits(client) as commits:
        run = client.start_run("five_steps")
        wait_until(lambda: run.id in completions.completed, what="the run")
        time.sleep(0.5)  # the worker would claim again at once after the run, if it did
    return next(commits)


def _jobs(client: Client) -> list[Job]:
    with client.database.read() as connection:
        return job_store.list_jobs(connection)


def test_a_run_started_beside_an_idle_worker_costs_its_start_and_one_transaction_a_step(
    database_url: str,
) -> None:
    # 6 transactions for 5 steps: the start (with the first step's start), one per step. The
    # last step's claims the worker's next job, finds none, and the worker does not look again.
    with _idle_worker(database_url) as (client, _worker, completions):
        assert _commits_of_one_run(client, completions) == 6
        (run_id,) = completions.completed[-1:]
        assert client.inspect_run(run_id).status == "completed"
        assert attempts_by_step(client, run_id) == {
            f"step_{index}": ["completed"] for index in range(1, 6)
        }
        assert _jobs(client) == []


def test_the_start_claims_the_first_step_without_reading_back_the_run_it_inserted(
    database_url: str,
) -> None:
    """The start's transaction wrote the run: it starts the first step from that record."""
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if threading.current_thread() is threading.main_thread():
            statements.append(" ".join(statement.split()))

    with _idle_worker(database_url) as (client, _worker, completions):
        sa.event.listen(client.database.engine, "before_cursor_execute", note)
        try:
            run = client.start_run("five_steps")
        finally:
            sa.event.remove(client.database.engine, "before_cursor_execute", note)
        wait_until(lambda: run.id in completions.completed, what="the run")
        assert attempts_by_step(client, run.id) == {
            f"step_{index}": ["completed"] for index in range(1, 6)
        }
    # The run's insert, the first job's, the first step's start and the run's move to running.
    assert [statement.split(" ")[0] for statement in statements] == [
        "INSERT",
        "INSERT",
        "INSERT",
        "UPDATE",
    ], statements
    assert not [s for s in statements if s.startswith("SELECT") and "squidmesh_runs" in s]


def test_a_run_of_a_queue_with_limits_goes_through_the_claim(database_url: str) -> None:
    # A claim counts a limited queue's running jobs: the start cannot skip it. 7 transactions:
    # the start, the claim (with the first step's start), one per step; none after the last.
    with _idle_worker(database_url, limited=True) as (client, _worker, completions):
        assert _commits_of_one_run(client, completions) == 7


def test_a_run_started_while_the_worker_is_busy_waits_in_the_queue(
    database_url: str, tmp_path: Path
) -> None:
    with _idle_worker(database_url) as (client, _worker, completions):
        gate, started = tmp_path / "gate", tmp_path / "started"
        gated = client.start_run("gated", {"gate": str(gate), "started": str(started)})
        wait_until(started.exists, what="the gated step to start")
        queued = client.start_run("five_steps")
        (job,) = [job for job in _jobs(client) if job.run_id == queued.id]
        assert (job.status, job.locked_by) == ("queued", None)
        assert client.inspect_run(queued.id).status == "pending"
        gate.touch()
        wait_until(lambda: {gated.id, queued.id} <= set(completions.completed), what="both runs")


def test_a_start_that_fails_frees_the_thread_it_reserved(database_url: str) -> None:
    with _idle_worker(database_url) as (client, _worker, completions):
        with pytest.raises(InvalidPayload):
            client.start_run("gated", {"gate": 1})
        # The worker's only thread was reserved for the failed start: given back, it takes
        # the next run straight away (6 transactions, not 7).
        assert _commits_of_one_run(client, completions) == 6


@pytest.mark.parametrize("then", ["rescued", "cancelled"])
def test_a_worker_thread_that_dies_before_performing_a_handed_run_loses_nothing(
    database_url: str, then: Literal["rescued", "cancelled"]
) -> None:
    # The start committed: the run's job is leased to the worker and its first step started.
    # The thread that was to perform it never does (the process died): the lease expires,
    # the job is rescued, and the step is taken over, or the cancelled run ends cancelled.
    with _idle_worker(database_url, lease=1.0) as (client, worker, _):
        submit = worker._submit
        dropped: list[Job] = []

        def drop_the_first(
            pool: concurrent.futures.ThreadPoolExecutor,
            job: Job,
            token: object,
            claim: object | None,
        ) -> None:
            if dropped:
                submit(pool, job, token, claim)
                return
            dropped.append(job)
            worker._threads.thread_ended(token)

        worker._submit = drop_the_first  # type: ignore[method-assign]
        run = client.start_run("five_steps")
        assert [job.run_id for job in dropped] == [run.id]
        explained = client.explain_run(run.id)
        assert (explained.status, explained.reason, explained.step) == (
            "running",
            "step_running",
            "step_1",
        )
        if then == "cancelled":
            assert client.cancel_run(run.id).status == "cancelling"
            explained = client.explain_run(run.id)
            assert (explained.reason, explained.details["running_steps"]) == (
                "cancelling",
                ["step_1"],
            )
        time.sleep(1.1)  # the lease expires
        assert rescue_expired(client.runtime, worker.name)  # as the loop does between polls
        worker._wake.set()
        final = "completed" if then == "rescued" else "cancelled"
        wait_until(lambda: client.inspect_run(run.id).status == final, what=f"the run {final}")
        expected = ["abandoned", "completed"] if then == "rescued" else ["abandoned"]
        assert attempts_by_step(client, run.id)["step_1"] == expected
        wait_until(lambda: _jobs(client) == [], what="no job left")


def test_a_thread_reserved_for_a_start_and_given_back_wakes_the_worker(
    database_url: str,
) -> None:
    # While a start holds the worker's only thread, another run's job is queued: its wake
    # finds no free thread. The start then hands the thread nothing (its job could not skip
    # the claim, or it failed): giving the thread back wakes the worker, which claims the
    # queued job at once rather than at its next poll (60 s here).
    with _idle_worker(database_url) as (client, worker, completions):
        woken_while_reserved = busy_wakes(worker)
        reserved = worker.offer_start(client.runtime, "default")
        assert reserved is not None
        queued = client.start_run("five_steps")  # no thread to offer: queued, and a wake
        assert woken_while_reserved.wait(10)
        worker.take_offered(*reserved)  # handed nothing
        wait_until(lambda: queued.id in completions.completed, timeout=10, what="the run")
