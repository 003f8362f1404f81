"""The Celery executor against a real Redis broker and real Celery workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker
from redis import Redis

from squidmesh_sdk import Client, ExecutorNotReady
from squidmesh_sdk.executors.celery import CeleryExecutor
from squidmesh_sdk.store import outbox as outbox_store
from squidmesh_sdk.store.schema import outbox
from squidmesh_sdk.testing import FakeClock
from tests.integration.executors.conftest import SpawnEngine
from tests.integration.executors.engines import QUEUE, celery_client, run_mixed_workload
from tests.integration.worker.conftest import ROOT, attempts_by_step, settled, wait_until
from tools.redisserver import RedisServer


def _executor(client: Client) -> CeleryExecutor:
    executor = client.executor
    assert isinstance(executor, CeleryExecutor)
    return executor


def _outbox_size(client: Client) -> int:
    with client.database.read() as connection:
        return outbox_store.count(connection)


@pytest.fixture
def client(database_url: str, redis: RedisServer) -> Iterator[Client]:
    with celery_client(database_url, redis.url) as instance:
        yield instance


@pytest.fixture
def in_process_worker(client: Client) -> Iterator[None]:
    """A real Celery worker thread (solo pool) and the relay of this process."""
    executor = _executor(client)
    with start_worker(
        executor.app, pool="solo", perform_ping_check=False, queues=[QUEUE], loglevel="WARNING"
    ):
        executor.start_relay()
        try:
            yield
        finally:
            executor.stop_relay()


@pytest.mark.usefixtures("in_process_worker")
def test_runs_with_fan_out_retry_delays_and_waits_complete(client: Client) -> None:
    run_mixed_workload(client)
    assert _outbox_size(client) == 0


def _broker_queue_length(redis: RedisServer) -> int:
    with Redis.from_url(redis.url) as connection:
        return int(connection.llen(QUEUE))


def test_a_rolled_back_change_leaves_no_message_and_a_committed_one_is_published(
    client: Client, redis: RedisServer
) -> None:
    executor = _executor(client)
    run = client.start_run("one_step")  # published after commit; no worker consumes it
    assert _broker_queue_length(redis) == 1
    assert _outbox_size(client) == 1, "kept until its delivery is done"

    class Abort(Exception):
        pass

    def enqueue_then_abort() -> None:
        with client.database.transaction(client.clock.now()) as tx:
            executor.enqueue_steps(tx, run, ["only", "only"])
            raise Abort

    with pytest.raises(Abort):
        enqueue_then_abort()
    assert _outbox_size(client) == 1
    assert _broker_queue_length(redis) == 1, "nothing published for the rolled-back change"


def test_one_executor_per_celery_app(client: Client) -> None:
    with pytest.raises(ExecutorNotReady, match="one CeleryExecutor per Celery app"):
        CeleryExecutor(_executor(client).app)


def _relay_crash(database_url: str, broker_url: str, point: str) -> None:
    """Start a run without publishing it, then die in the relay at ``point``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.executors.relay_crash",
            database_url,
            broker_url,
            point,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("point", ["before_publish", "after_publish"])
def test_a_relay_killed_around_its_publish_loses_nothing(
    client: Client, database_url: str, redis: RedisServer, point: str
) -> None:
    _relay_crash(database_url, redis.url, point)
    run = client.list_runs()[0]
    assert _outbox_size(client) == 1, "the killed relay deleted nothing"

    executor = _executor(client)
    with start_worker(
        executor.app, pool="solo", perform_ping_check=False, queues=[QUEUE], loglevel="WARNING"
    ):
        executor.start_relay()  # republishes once the dead relay's 1 s lease is over
        try:
            wait_until(settled(client, [run]), what="the run to finish")
            # After a publish, the run may finish before the lease is over; the message is
            # then published a second time, and that duplicate delivery changes nothing.
            wait_until(lambda: _outbox_size(client) == 0, what="the outbox to drain")
        finally:
            executor.stop_relay()
    assert client.inspect_run(run.id).status == "completed"
    assert attempts_by_step(client, run.id) == {f"step_{i}": ["completed"] for i in range(1, 6)}


def test_runs_complete_when_the_broker_restarts_mid_run(
    client: Client, database_url: str, redis: RedisServer, spawn_engine_worker: SpawnEngine
) -> None:
    runs = [client.start_run("five_steps") for _ in range(20)]
    spawn_engine_worker("celery", database_url, redis.url)
    wait_until(
        lambda: any(client.inspect_run(run.id).status == "completed" for run in runs),
        what="the first completed run",
    )
    redis.stop()
    more = [client.start_run("five_steps") for _ in range(5)]  # kept in the outbox meanwhile
    assert _outbox_size(client) >= 5
    redis.start()
    # No relay runs in this process: the worker's own relay (started on worker_ready)
    # publishes what the outage kept in the outbox.
    assert not _executor(client).relay.running
    wait_until(settled(client, runs + more), timeout=120, what="every run to finish")
    assert {client.inspect_run(run.id).status for run in runs + more} == {"completed"}
    for run in runs + more:
        assert [s.count("completed") for s in attempts_by_step(client, run.id).values()] == [1] * 5
    assert _outbox_size(client) == 0


def test_a_worker_killed_mid_step_is_replaced_and_the_run_completes(
    client: Client,
    database_url: str,
    redis: RedisServer,
    spawn_engine_worker: SpawnEngine,
    tmp_path: Path,
) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    run = client.start_run("gated", {"gate": str(gate), "started": str(started)})
    doomed = spawn_engine_worker("celery", database_url, redis.url)
    wait_until(started.exists, what="the blocked step to start in the first worker")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    gate.touch()
    spawn_engine_worker("celery", database_url, redis.url)
    wait_until(settled(client, [run]), what="the second worker to finish the run")
    assert client.inspect_run(run.id).status == "completed"
    assert attempts_by_step(client, run.id) == {
        "before": ["completed"],
        "blocked": ["abandoned", "completed"],
        "after": ["completed"],
    }


def test_a_task_for_a_run_that_does_not_exist_is_dropped_not_retried(client: Client) -> None:
    missing = {"kind": "step", "run_id": "0190a5a5-0000-7000-8000-000000000000", "step": "only"}
    # Celery's eager mode runs the task body here, with a real request (no retries so far).
    assert _executor(client).task.apply(args=(missing,)).get() == "rejected"
    assert _executor(client).task.apply(args=({"kind": "bogus"},)).get() == "rejected"


def test_the_workers_scheduler_starts_one_run_per_cron_window(
    database_url: str, redis: RedisServer
) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    with celery_client(database_url, redis.url, clock=clock) as client:
        executor = _executor(client)
        scheduler = executor.scheduler
        assert scheduler is not None
        with start_worker(
            executor.app, pool="solo", perform_ping_check=False, queues=[QUEUE], loglevel="WARNING"
        ):
            # Celery workers start these on worker_ready (the guide's test runs a real one).
            executor.start_relay()
            scheduler.start(interval=0.05)
            try:
                wait_until(lambda: scheduler.tick() == 0, what="the first tick")
                clock.advance(timedelta(days=1))  # the 03:00 window of 2 March is due
                wait_until(lambda: bool(client.list_runs(workflow="nightly")), what="a run")
                [run] = client.list_runs(workflow="nightly")
                wait_until(settled(client, [run]), what="the cron run to finish")
            finally:
                scheduler.stop()
                executor.stop_relay()
        assert client.inspect_run(run.id).context["window"] == "2026-03-02T03:00:00+00:00"
        assert len(client.list_runs(workflow="nightly")) == 1


def test_a_prefork_pool_whose_children_are_replaced_keeps_every_connection_working(
    client: Client, database_url: str, redis: RedisServer, spawn_engine_worker: SpawnEngine
) -> None:
    # Each child performs one task, then is replaced by a new fork of the parent, whose relay
    # and cron threads keep their own database connections through every fork.
    spawn_engine_worker(
        "celery", database_url, redis.url,
        "--pool=prefork", "--concurrency=2", "--max-tasks-per-child=1",
    )  # fmt: skip
    runs = [client.start_run("five_steps") for _ in range(4)]
    delayed = client.start_run("delayed")  # its retry and wait are published by the relay
    wait_until(settled(client, [*runs, delayed]), timeout=120, what="every run to finish")
    assert {client.inspect_run(run.id).status for run in [*runs, delayed]} == {"completed"}
    for run in runs:
        assert attempts_by_step(client, run.id) == {f"step_{i}": ["completed"] for i in range(1, 6)}
    assert _outbox_size(client) == 0


def test_a_message_the_broker_lost_is_published_again(client: Client, redis: RedisServer) -> None:
    run = client.start_run("five_steps")
    assert _broker_queue_length(redis) == 1
    with Redis.from_url(redis.url) as connection:
        connection.flushall()  # the broker loses the message it acknowledged
    executor = _executor(client)
    with start_worker(
        executor.app, pool="solo", perform_ping_check=False, queues=[QUEUE], loglevel="WARNING"
    ):
        executor.start_relay()  # publishes it again once redeliver_after (3 s) is over
        try:
            wait_until(settled(client, [run]), what="the run to finish")
        finally:
            executor.stop_relay()
    assert client.inspect_run(run.id).status == "completed"
    assert attempts_by_step(client, run.id) == {f"step_{i}": ["completed"] for i in range(1, 6)}
    assert _outbox_size(client) == 0


def test_a_process_without_a_relay_stops_publishing_after_commit_once_the_broker_refused(
    database_url: str,
) -> None:
    closed = RedisServer()  # a free port nobody listens on: the broker is down
    try:
        with celery_client(database_url, closed.url) as client:
            first = client.start_run("one_step")  # still succeeds: the message waits
            second = client.start_run("one_step")
            assert {run.status for run in [first, second]} == {"pending"}
            with client.database.read() as connection:
                rows = connection.execute(
                    sa.select(outbox.c.attempts, outbox.c.last_error).order_by(outbox.c.id)
                ).all()
    finally:
        closed.destroy()
    (tried, refusal), (untried, none) = rows
    assert tried == 1
    assert refusal is not None
    assert "Error" in refusal
    assert (untried, none) == (0, None), "not tried again from the caller for 5 s"


def test_a_run_s_priority_goes_to_its_messages_through_the_host_s_mapping(
    database_url: str, redis: RedisServer
) -> None:
    # The Redis transport runs lower numbers first: 0 for the highest squidmesh priorities.
    def redis_priority(priority: int) -> int:
        return 9 - min(9, max(0, (priority + 1000) * 10 // 2001))

    with celery_client(database_url, redis.url, priority=redis_priority) as client:
        client.start_run("one_step", priority=1000)
        client.start_run("one_step")
        with Redis.from_url(redis.url) as connection:
            keys = [key.decode() for key in connection.keys(f"{QUEUE}*")]
            published = [
                json.loads(message)
                for key in keys
                if connection.type(key) == b"list"
                for message in connection.lrange(key, 0, -1)
            ]
    assert sorted(message["properties"]["priority"] for message in published) == [0, 5]


def test_without_a_mapping_no_priority_is_sent(client: Client, redis: RedisServer) -> None:
    client.start_run("one_step", priority=1000)
    with Redis.from_url(redis.url) as connection:
        (message,) = [json.loads(m) for m in connection.lrange(QUEUE, 0, -1)]
    assert message["properties"].get("priority") in (None, 0)
