"""Workers deliver database-queue jobs: runs complete, delays are durable, restarts lose nothing."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from squidmesh_sdk import Client, InlineExecutor, InvalidArgument, Worker
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from tests.integration.worker.app import make_client
from tests.integration.worker.conftest import attempts_by_step, settled, wait_until


def _jobs(client: Client) -> list[job_store.Job]:
    with client.database.read() as connection:
        return job_store.list_jobs(connection)


def test_jobs_are_written_with_the_run_and_deleted_with_the_outcome(client: Client) -> None:
    run = client.start_run("five_steps")
    (job,) = _jobs(client)
    assert (job.kind, job.step, job.status, job.run_id) == ("step", "step_1", "queued", run.id)
    with Worker(client, concurrency=2, poll_interval=0.05):
        wait_until(settled(client, [run]), what="the run to finish")
    done = client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert [len(sr.attempts or ()) for sr in done.step_runs or ()] == [1, 1, 1, 1, 1]
    assert _jobs(client) == []


def test_a_refused_start_leaves_no_job(client: Client) -> None:
    with pytest.raises(Exception, match="invalid payload"):
        client.start_run("gated", {"gate": 1})
    assert _jobs(client) == []


def test_retry_delays_and_waits_are_rows_that_survive_a_worker_restart(
    database_url: str,
) -> None:
    with make_client(database_url) as first:
        run = first.start_run("delayed")
        with Worker(first, poll_interval=0.05):
            wait_until(
                lambda: first.inspect_run(run.id).status == "retrying", what="the first failure"
            )
        (retry_job,) = _jobs(first)
        assert retry_job.step == "flaky"
        assert retry_job.run_at > first.clock.now()
    # A new process (here: a new client and worker) finds the delayed job in the database.
    with make_client(database_url) as second, Worker(second, poll_interval=0.05):
        wait_until(settled(second, [run]), what="the run to finish")
        done = second.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    flaky = done.step_run("flaky")
    assert flaky is not None
    assert [a.status for a in flaky.attempts or ()] == ["failed", "completed"]


def test_fan_out_and_many_runs_with_several_in_process_workers(client: Client) -> None:
    runs = [client.start_run("five_steps") for _ in range(30)]
    with (
        Worker(client, concurrency=3, poll_interval=0.05),
        Worker(client, concurrency=3, poll_interval=0.05),
    ):
        wait_until(settled(client, runs), what="every run to finish")
    assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
    assert _jobs(client) == []


def test_async_steps_run_on_the_workers_event_loop(database_url: str) -> None:
    from squidmesh_sdk import COMPLETE, Workflow, manual

    loops: list[int] = []
    wf = Workflow("async_chain", triggers=[manual("go")])

    @wf.step
    async def first() -> dict[str, int]:
        import asyncio

        loops.append(id(asyncio.get_running_loop()))
        return {"first": 1}

    @wf.step
    async def second() -> dict[str, int]:
        import asyncio

        loops.append(id(asyncio.get_running_loop()))
        return {"second": 2}

    wf.chain(first, second, COMPLETE)
    from squidmesh_sdk import DatabaseExecutor

    with Client(database_url, [wf], executor=DatabaseExecutor()) as client:
        run = client.start_run("async_chain")
        with Worker(client, poll_interval=0.05):
            wait_until(settled(client, [run]), what="the run to finish")
        assert client.inspect_run(run.id).status == "completed"
    assert len(loops) == 2
    assert loops[0] == loops[1], "both steps ran on the worker's one event loop"


def test_a_worker_needs_the_database_executor(database_url: str) -> None:
    with (
        Client(database_url, [], executor=InlineExecutor()) as client,
        pytest.raises(ValueError, match="DatabaseExecutor"),
    ):
        Worker(client)


def test_stop_lets_a_running_step_finish(client: Client, tmp_path: Path) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    run = client.start_run("gated", {"gate": str(gate), "started": str(started)})
    worker = Worker(client, poll_interval=0.05)
    worker.start()
    wait_until(started.exists, what="the blocked step to start")
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    gate.touch()
    stopper.join(timeout=60)
    assert not stopper.is_alive()
    current = client.inspect_run(run.id, include_history=True)
    blocked = current.step_run("blocked")
    assert blocked is not None
    assert blocked.status == "completed"
    (next_job,) = _jobs(client)
    assert (next_job.step, next_job.status) == ("after", "queued")


def test_a_retried_outcome_transaction_claims_nothing_ahead(client: Client) -> None:
    """A job handed over by a transaction that was rolled back and retried is not claimed.

    ``offer.pending`` then names a job from the failed attempt; claiming its step would leave
    the step running with no job to finish it.
    """
    from squidmesh_sdk.port.continuation import continuation
    from squidmesh_sdk.port.delivery import Delivery
    from squidmesh_sdk.runtime import runner
    from squidmesh_sdk.store.jobs import NewJob

    run = client.start_run("five_steps")
    with client.runtime.transaction() as tx:
        (job,) = claim_store.claim(tx, worker="w", queues=["default"], limit=1, lease=30)
    with continuation("w", 30, ["default"], lambda: True) as offer:
        # What the failed first attempt left behind: a reservation and a job that never was.
        offer.reserved = True
        offer.pending = (NewJob(kind="step", payload={}, queue="default", run_id=run.id,
                                step="step_2"), 10**9, object())  # fmt: skip
        delivery = Delivery(settle=lambda tx: job_store.complete(tx, job.id, worker="w"))
        assert runner.perform(client.runtime, job.payload, delivery=delivery) == "executed"
    assert offer.claim is None
    assert offer.job is None
    (queued,) = _jobs(client)
    assert (queued.step, queued.status) == ("step_2", "queued")
    assert client.inspect_run(run.id, include_history=True).step_run("step_2") is None


def test_a_step_left_running_by_a_delivery_that_raised_is_taken_over_by_its_retry(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcome of a started step could not be written (a fault injected once): the job's
    next delivery takes the step over instead of skipping it as already running."""
    from squidmesh_sdk.runtime import execution

    write_outcome = execution._apply_and_settle
    failures = [RuntimeError("the outcome could not be written")]

    def failing_once(*args: object, **kwargs: object) -> None:
        if failures:
            raise failures.pop()
        write_outcome(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(execution, "_apply_and_settle", failing_once)
    run = client.start_run("one_step")
    with Worker(client, concurrency=1, poll_interval=0.05):
        wait_until(settled(client, [run]), what="the retried delivery to finish the run")
    assert not failures, "the fault was injected"
    assert client.inspect_run(run.id).status == "completed"
    assert attempts_by_step(client, run.id) == {"only": ["abandoned", "completed"]}


@pytest.mark.parametrize(
    ("settings", "named", "says"),
    [
        ({"queues": "emails"}, "queues", "not one name"),  # was taken as 6 one-letter queues
        ({"queues": []}, "queues", "at least one queue"),
        ({"queues": [5]}, "queues", "non-empty string"),
        ({"queues": ["q" * 101]}, "queues", "at most 100 characters"),
        ({"concurrency": 0}, "concurrency", "integer >= 1"),
        ({"concurrency": "4"}, "concurrency", "integer >= 1"),
        ({"concurrency": 2.5}, "concurrency", "integer >= 1"),
        ({"lease": 0}, "lease", "> 0"),
        ({"lease": float("nan")}, "lease", "finite"),
        ({"poll_interval": "1"}, "poll_interval", "finite"),
        ({"shutdown_timeout": -5}, "shutdown_timeout", ">= 0"),
        ({"max_deliveries": 0}, "max_deliveries", "integer >= 1"),
        ({"name": 5}, "name", "non-empty string"),
        ({"name": "w" * 201}, "name", "at most 200 characters"),  # PostgreSQL refused claims
        ({"purge_after": 3600}, "purge_after", "positive timedelta"),
        ({"purge_after": timedelta(days=10**6)}, "purge_after", "at most 100 years"),
        ({"purge_interval": 0}, "purge_interval", "> 0"),
        ({"cron_catch_up": "bogus"}, "cron_catch_up", "'latest', 'all' or 'none'"),
    ],
)
def test_a_worker_refuses_bad_settings_by_name(
    client: Client, settings: dict[str, Any], named: str, says: str
) -> None:
    with pytest.raises(InvalidArgument, match=says) as refused:
        Worker(client, **settings)
    assert refused.value.argument == named


def test_a_worker_needs_a_client_of_the_database_queue() -> None:
    with pytest.raises(InvalidArgument, match="executor=DatabaseExecutor"):
        Worker(None)  # type: ignore[arg-type]
