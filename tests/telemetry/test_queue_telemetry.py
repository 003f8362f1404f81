"""The database queue seen by an operator's telemetry: depth and oldest-job age as observable
gauges, and the messaging attributes of the saga rollback's ``compensate`` span."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, StepContext, Worker, Workflow, manual
from squidmesh_sdk.clock import SystemClock
from squidmesh_sdk.executors import queue_metrics
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.database import Database
from tests.integration.worker.conftest import wait_until
from tests.telemetry.conftest import Telemetry
from tests.telemetry.support import attrs, check_links, metric_points, run_trace

DEPTH, AGE = "squidmesh.queue.depth", "squidmesh.queue.oldest_age"
WAITED = 90.0  # seconds the oldest due job of "default" has waited when the test starts


def booking() -> Workflow:
    wf = Workflow("booking", triggers=[manual("go")])

    @wf.step
    def book() -> dict[str, Any]:
        return {"booking": "b-1"}

    @book.compensate
    def cancel(booking: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"cancelled": booking["booking"]}

    @wf.step
    def charge(ctx: StepContext) -> dict[str, Any]:
        raise PermissionError("card refused")

    wf.chain(book, charge, COMPLETE)
    return wf


@pytest.fixture
def queue_client(database_url: str) -> Iterator[Client]:
    with Client(database_url, [booking()], executor=DatabaseExecutor()) as client:
        yield client


def job(queue: str, **more: Any) -> job_store.NewJob:
    # For a workflow no worker here holds: the test's workers leave these jobs where they are.
    return job_store.NewJob(kind="step", payload={}, queue=queue, workflow="elsewhere", **more)


def fill_queues(client: Client) -> None:
    """On "default": 2 due (the oldest due WAITED s ago), 1 delayed, 1 running, 1 failed;
    on "urgent": 1 due."""
    database, now = client.runtime.database, client.runtime.clock.now()
    with database.transaction(now) as tx:  # leased to a worker of another process
        job_store.enqueue(tx, [job("default")])
        claim_store.claim(tx, worker="other", queues=["default"], limit=1, lease=3600)
    with database.transaction(now) as tx:  # a dead letter
        job_store.enqueue(tx, [job("default")])
        (failed,) = claim_store.claim(tx, worker="other", queues=["default"], limit=1, lease=60)
        assert job_store.fail(tx, failed.id, worker="other", error={"type": "builtins.KeyError"})
    with database.transaction(now - timedelta(seconds=WAITED)) as tx:
        job_store.enqueue(tx, [job("default")])
    with database.transaction(now) as tx:
        job_store.enqueue(tx, [job("default"), job("default", delay=3600), job("urgent")])


def gauges(telemetry: Telemetry) -> tuple[dict[frozenset[Any], Any], dict[frozenset[Any], Any]]:
    # One collection observes both gauges (the SDK collects every instrument at once).
    depth = metric_points(telemetry.reader, DEPTH)
    age = metric_points(telemetry.reader, AGE)
    return depth, age


def depth_of(queue: str, **states: int) -> dict[frozenset[Any], int]:
    return {
        attrs(**{"squidmesh.queue": queue, "squidmesh.job.state": state}): states.get(state, 0)
        for state in ("queued", "delayed", "running", "failed")
    }


def test_queue_depth_and_oldest_age_are_gauges_while_workers_run(
    queue_client: Client, telemetry: Telemetry
) -> None:
    fill_queues(queue_client)
    assert gauges(telemetry) == ({}, {}), "no worker runs: nothing is observed"

    one = Worker(queue_client, queues=["default"], poll_interval=0.05, cron=False)
    two = Worker(queue_client, queues=["default", "urgent"], poll_interval=0.05, cron=False)
    with one, two:  # two workers of one process take "default": it is observed once
        depth, age = gauges(telemetry)
        assert depth == {
            **depth_of("default", queued=2, delayed=1, running=1, failed=1),
            **depth_of("urgent", queued=1),
        }
        assert set(age) == {attrs(**{"squidmesh.queue": q}) for q in ("default", "urgent")}
        assert WAITED <= age[attrs(**{"squidmesh.queue": "default"})] < WAITED + 30
        assert 0 <= age[attrs(**{"squidmesh.queue": "urgent"})] < 30

        two.stop()  # "urgent" is no one's any more
        depth, age = gauges(telemetry)
        assert depth == depth_of("default", queued=2, delayed=1, running=1, failed=1)
        assert set(age) == {attrs(**{"squidmesh.queue": "default"})}

    assert gauges(telemetry) == ({}, {}), "the last worker stopped: nothing is observed"


def test_an_idle_queue_reports_zeros(queue_client: Client, telemetry: Telemetry) -> None:
    with Worker(queue_client, queues=["quiet"], poll_interval=0.05, cron=False):
        depth, age = gauges(telemetry)
    assert depth == depth_of("quiet")
    assert age == {attrs(**{"squidmesh.queue": "quiet"}): 0.0}


class Registrant:
    queues = ("default",)


def test_a_failed_read_is_logged_and_observes_nothing(
    tmp_path: Any, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    unmigrated = Database(f"sqlite+pysqlite:///{tmp_path}/empty.db")  # no squidmesh_jobs table
    registrant = Registrant()
    queue_metrics.register(registrant, unmigrated, SystemClock())
    try:
        with caplog.at_level(logging.WARNING, logger="squidmesh_sdk.worker"):
            assert gauges(telemetry) == ({}, {})
    finally:
        queue_metrics.unregister(registrant)
        unmigrated.dispose()
    (record,) = [r for r in caplog.records if r.getMessage() == "queue metrics read failed"]
    assert record.error_type == "sqlalchemy.exc.OperationalError"  # type: ignore[attr-defined]
    assert "squidmesh_jobs" in record.error_message  # type: ignore[attr-defined]


def test_the_rollback_span_names_its_queue_and_job(
    queue_client: Client, telemetry: Telemetry
) -> None:
    with Worker(queue_client, poll_interval=0.05, cron=False):
        run = queue_client.start_run("booking")

        def rolled_back() -> bool:
            return any(
                s.name == "compensate booking" and s.attributes.get("squidmesh.run_id") == run.id
                for s in telemetry.spans()
            )

        wait_until(rolled_back, timeout=30, what="the worker to compensate the failed run")

    trace = run_trace(telemetry.spans(), run.id)
    check_links(trace)
    rollback = trace.one("compensate booking")
    assert rollback.kind == "CONSUMER"
    send = trace.one("send compensation booking")
    assert [s.name for s in trace.linked(rollback)] == [send.name]
    assert {k: v for k, v in rollback.attributes.items() if k.startswith("messaging.")} == {
        "messaging.system": "squidmesh",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": send.attributes["messaging.message.id"],
    }
    assert isinstance(send.attributes["messaging.message.id"], str)
    assert rollback.attributes["squidmesh.outcome"] == "compensated"
