"""A database error inside a worker's transaction is retried as such, never swallowed.

On PostgreSQL a failed statement aborts its transaction, and ``COMMIT`` then rolls it back
without raising: an error caught and ignored inside a transaction loses everything it wrote.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    InlineExecutor,
    Retry,
    Worker,
    Workflow,
    manual,
)
from squidmesh_sdk.executors import worker as worker_module
from squidmesh_sdk.runtime import runner
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import run_reads
from tests.integration.worker.app import make_client
from tests.integration.worker.conftest import (
    attempts_by_step,
    gated_run,
    settled,
    wait_until,
)


def test_a_failed_claim_of_the_next_job_does_not_lose_the_step_outcome_it_rides_with(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # One thread, two queued runs: the first run's outcome also claims the second run's job
    # and step (the worker's next job, in the same transaction). That claim meets a database
    # error. The outcome must still be recorded once (written again without the claim), not
    # rolled back with it and its step run a second time after the lease expired.
    first, second = client.start_run("one_step"), client.start_run("one_step")
    lock_run = run_reads.lock_run_unless_locked
    failed: list[str] = []

    def failing_for_the_second_run_once(connection: sa.Connection, run_id: Any) -> Any:
        if str(run_id) == second.id and not failed:
            failed.append(second.id)
            connection.exec_driver_sql("SELECT * FROM squidmesh_no_such_table")
        return lock_run(connection, run_id)

    monkeypatch.setattr(run_reads, "lock_run_unless_locked", failing_for_the_second_run_once)
    with (
        caplog.at_level(logging.WARNING),
        Worker(client, concurrency=1, poll_interval=0.05, lease=1.0),
    ):
        wait_until(settled(client, [first, second]), what="both runs to finish")
    assert failed == [second.id]
    assert "claiming the worker's next job with a step outcome failed" in caplog.text
    for run in (first, second):
        assert client.inspect_run(run.id).status == "completed"
        assert attempts_by_step(client, run.id) == {"only": ["completed"]}


def _exiting() -> Workflow:
    wf = Workflow("exiting", triggers=[manual("go")])

    @wf.step(retry=Retry(max_attempts=2))
    def leave() -> dict[str, Any]:
        sys.exit(3)  # a step that wraps a command-line tool's main()

    wf.chain(leave, COMPLETE)
    return wf


def _cancelled() -> Workflow:
    wf = Workflow("cancelled", triggers=[manual("go")])

    @wf.step(retry=Retry(max_attempts=2))
    async def leave() -> dict[str, Any]:
        task = asyncio.ensure_future(asyncio.sleep(60))
        task.cancel()
        await task  # a task the step awaits was cancelled: CancelledError, a BaseException
        return {}

    wf.chain(leave, COMPLETE)
    return wf


@pytest.mark.parametrize("executor", ["worker", "inline"])
@pytest.mark.parametrize(("workflow", "error"), [(_exiting, "SystemExit"), (_cancelled, "Cancel")])
def test_a_step_that_exits_or_is_cancelled_fails_like_any_other(
    database_url: str, executor: str, workflow: Callable[[], Workflow], error: str
) -> None:
    # SystemExit and CancelledError are not Exceptions: they went past the step's error
    # handling, ended the delivery without a word, and the job's lease expired and was rescued
    # again and again, the run running for good (the inline executor: they ended the program
    # that started the run).
    definition = workflow()
    if executor == "inline":
        with Client(database_url, [definition], executor=InlineExecutor()) as inline:
            run = inline.start_run(definition.name)
            finished = inline.inspect_run(run.id, include_history=True)
    else:
        with (
            Client(database_url, [definition], executor=DatabaseExecutor()) as queued,
            Worker(queued, concurrency=1, poll_interval=0.05, lease=1.0),
        ):
            run = queued.start_run(definition.name)
            finished = queued.wait_for_run(run.id, timeout=30, include_history=True)
    assert finished.status == "failed"
    assert finished.last_error is not None
    assert error in str(finished.last_error)
    (step_run,) = finished.step_runs or ()
    assert [attempt.status for attempt in step_run.attempts or ()] == ["failed", "failed"]


class _Unexpected(BaseException):
    """Not an Exception, as ``SystemExit`` once was to the step's error handling."""


def test_a_delivery_ended_by_what_is_not_an_exception_is_logged_and_rescued(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    perform = runner.perform
    raised: list[str] = []

    def ending_once(*args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append("once")
            raise _Unexpected("a delivery ended by something that is not an Exception")
        return perform(*args, **kwargs)

    monkeypatch.setattr(runner, "perform", ending_once)
    with (
        caplog.at_level(logging.WARNING),
        Worker(client, concurrency=1, poll_interval=0.05, lease=1.0),
    ):
        run = client.start_run("one_step")
        finished = client.wait_for_run(run.id, timeout=30)
    assert raised == ["once"]
    assert finished.status == "completed"
    assert "job delivery ended with _Unexpected" in caplog.text
    assert "rescued a job whose lease expired" in caplog.text


def test_a_worker_loop_that_fails_logs_it_and_goes_on(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rescue = worker_module.rescue_expired
    raised: list[str] = []

    def failing_once(*args: Any) -> bool:
        if not raised:
            raised.append("once")
            raise RuntimeError("a bug in the worker's loop")
        return rescue(*args)

    monkeypatch.setattr(worker_module, "rescue_expired", failing_once)
    with (
        caplog.at_level(logging.WARNING),
        Worker(client, concurrency=1, poll_interval=0.05),
    ):
        wait_until(lambda: bool(raised), what="the loop to fail")
        # Started by another client, so that only the worker's loop can find the run.
        with make_client(client.database.engine.url.render_as_string(False)) as other:
            run = other.start_run("one_step")
            finished = other.wait_for_run(run.id, timeout=30)
    assert finished.status == "completed"
    assert "worker loop failed; retrying" in caplog.text
    assert "a bug in the worker's loop" in caplog.text


def test_a_heartbeat_that_fails_once_keeps_the_leases(
    client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    extend = job_store.extend_leases
    raised: list[str] = []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        if not raised:
            raised.append("once")
            raise RuntimeError("a bug in the heartbeat")
        return extend(*args, **kwargs)

    monkeypatch.setattr(job_store, "extend_leases", failing_once)
    with (
        caplog.at_level(logging.WARNING),
        Worker(client, concurrency=1, poll_interval=0.05, lease=1.0),
    ):
        run, gate, started = gated_run(client, tmp_path)
        wait_until(started.exists, what="the blocked step to start")
        wait_until(lambda: bool(raised), what="the heartbeat to fail")
        time.sleep(2.5)  # over two leases: a worker without a heartbeat loses the job
        gate.touch()
        finished = client.wait_for_run(run.id, timeout=30)
    assert finished.status == "completed"
    assert attempts_by_step(client, run.id)["blocked"] == ["completed"]
    assert "heartbeat failed" in caplog.text
    assert "rescued a job whose lease expired" not in caplog.text
