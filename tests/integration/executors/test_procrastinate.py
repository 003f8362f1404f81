"""The Procrastinate executor against real Procrastinate workers on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, Database, DispatchFailed, ExecutorNotReady
from squidmesh_sdk.executors.procrastinate import (
    HOUSEKEEPING_TASK_NAME,
    TASK_NAME,
    ProcrastinateExecutor,
)
from squidmesh_sdk.testing import FakeClock
from tests.integration.executors.conftest import SpawnEngine, apply_procrastinate_schema
from tests.integration.executors.engines import (
    QUEUE,
    procrastinate_client,
    procrastinate_conninfo,
    run_mixed_workload,
    run_procrastinate_worker,
)
from tests.integration.worker.conftest import (
    attempts_by_step,
    settled,
    settled_or_restarting,
    wait_until,
)
from tools.pgserver import PrivateServer

pytestmark = pytest.mark.postgres
on_postgres = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def _executor(client: Client) -> ProcrastinateExecutor:
    executor = client.executor
    assert isinstance(executor, ProcrastinateExecutor)
    return executor


def _jobs(client: Client) -> dict[str, int]:
    """Procrastinate's squidmesh jobs (not the periodic stalled-job check) by status."""
    with client.database.read() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT status::text, count(*) FROM procrastinate_jobs "
                "WHERE task_name = :task GROUP BY status"
            ),
            {"task": TASK_NAME},
        ).all()
    return dict(rows)


@pytest.fixture
def client(procrastinate_url: str) -> Iterator[Client]:
    with procrastinate_client(procrastinate_url) as instance:
        yield instance


@contextlib.contextmanager
def _worker_thread(client: Client) -> Iterator[None]:
    """A real Procrastinate worker on an event loop thread of this process."""
    loop = asyncio.new_event_loop()
    worker = loop.create_task(
        run_procrastinate_worker(_executor(client).app, install_signal_handlers=False)
    )

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(worker)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(worker.cancel)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture
def in_process_worker(client: Client) -> Iterator[None]:
    with _worker_thread(client):
        yield


@on_postgres
@pytest.mark.usefixtures("in_process_worker")
def test_runs_with_fan_out_retry_delays_and_waits_complete(client: Client) -> None:
    run_mixed_workload(client)
    # One job per step attempt (a retry is a job of its own), each performed once; a wait step
    # is two jobs: the one that starts it and its timer.
    steps = 9 + 5 * 5 + 5  # fan_out: flaky twice, a wait; delayed: flaky twice, a wait, done
    assert _jobs(client) == {"succeeded": steps}


@on_postgres
def test_a_rollback_leaves_no_job_and_a_commit_leaves_them_all(client: Client) -> None:
    executor = _executor(client)
    run = client.start_run("one_step")
    assert _jobs(client) == {"todo": 1}

    class Abort(Exception):
        pass

    def enqueue_then_abort() -> None:
        with client.database.transaction(client.clock.now()) as tx:
            executor.enqueue_steps(tx, run, ["only", "only", "only"])
            raise Abort

    with pytest.raises(Abort):
        enqueue_then_abort()
    assert _jobs(client) == {"todo": 1}

    with client.database.transaction(client.clock.now()) as tx:
        deferred = executor.enqueue_steps(tx, run, ["only", "only"], schedule_in=30)
    assert _jobs(client) == {"todo": 3}
    with client.database.read() as connection:
        delays = connection.execute(
            sa.text(
                "SELECT extract(epoch FROM scheduled_at - now()) FROM procrastinate_jobs "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": [job["job_id"] for job in deferred]},
        ).scalars()
        assert all(25 < delay <= 30 for delay in delays)


@on_postgres
def test_a_database_without_procrastinates_schema_is_refused_and_nothing_is_kept(
    database_url: str,
) -> None:
    with procrastinate_client(database_url) as client:
        with pytest.raises(DispatchFailed) as raised:
            client.start_run("one_step")
        assert isinstance(raised.value.__cause__, ExecutorNotReady)
        assert "schema --apply" in str(raised.value.__cause__)
        assert client.list_runs() == []


def test_a_sqlite_client_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExecutorNotReady, match="PostgreSQL through psycopg 3"):
        procrastinate_client(f"sqlite:///{tmp_path}/squidmesh.db")


def test_runs_complete_when_postgresql_restarts_mid_run(
    private_server: PrivateServer, spawn_engine_worker: SpawnEngine
) -> None:
    url = private_server.url
    apply_procrastinate_schema(url)
    database = Database(url)
    client = procrastinate_client(url)
    try:
        client.migrate()
        runs = [client.start_run("five_steps") for _ in range(30)]
        workers = [spawn_engine_worker("procrastinate", url)]
        wait_until(
            lambda: any(client.inspect_run(run.id).status == "completed" for run in runs),
            what="the first completed run",
        )
        private_server.stop("fast")
        private_server.start()

        def supervised_and_settled() -> bool:
            # A Procrastinate worker exits when it loses the database; like systemd or
            # Kubernetes would, start another one. Nothing may be lost in between.
            if workers[-1].poll() is not None:
                workers.append(spawn_engine_worker("procrastinate", url))
            return settled_or_restarting(client, runs)

        wait_until(supervised_and_settled, timeout=180, what="every run to finish")
        assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
        for run in runs:
            completed = [s.count("completed") for s in attempts_by_step(client, run.id).values()]
            assert completed == [1, 1, 1, 1, 1]
    finally:
        client.close()
        database.dispose()


@on_postgres
def test_a_worker_killed_mid_step_is_replaced_and_the_run_completes(
    client: Client, procrastinate_url: str, spawn_engine_worker: SpawnEngine, tmp_path: Path
) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    run = client.start_run("gated", {"gate": str(gate), "started": str(started)})
    doomed = spawn_engine_worker("procrastinate", procrastinate_url)
    wait_until(started.exists, what="the blocked step to start in the first worker")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    gate.touch()
    spawn_engine_worker("procrastinate", procrastinate_url)
    wait_until(settled(client, [run]), what="the second worker to finish the run")
    assert client.inspect_run(run.id).status == "completed"
    assert attempts_by_step(client, run.id) == {
        "before": ["completed"],
        "blocked": ["abandoned", "completed"],
        "after": ["completed"],
    }


@on_postgres
@pytest.mark.usefixtures("in_process_worker")
def test_a_job_for_a_run_that_does_not_exist_fails_at_once_and_is_kept(
    client: Client, procrastinate_url: str
) -> None:
    missing: dict[str, procrastinate.types.JSONValue] = {
        "kind": "step",
        "run_id": "0190a5a5-0000-7000-8000-000000000000",
        "step": "only",
    }
    producer = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(
            conninfo=procrastinate_conninfo(procrastinate_url)
        )
    )
    with producer.open():
        producer.configure_task(TASK_NAME, queue=QUEUE).defer(payload=missing)
    wait_until(lambda: _jobs(client) == {"failed": 1}, what="the job to fail")
    with client.database.read() as connection:
        attempts = connection.execute(
            sa.text("SELECT attempts FROM procrastinate_jobs WHERE task_name = :task"),
            {"task": TASK_NAME},
        ).scalar_one()
    assert attempts == 1, "not retried"


@on_postgres
def test_the_housekeeping_task_starts_one_run_per_cron_window(procrastinate_url: str) -> None:
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    with procrastinate_client(procrastinate_url, clock=clock) as client:
        with _worker_thread(client):
            wait_until(  # the first housekeeping run starts tracking the trigger
                lambda: _housekeeping_runs(client) >= 1, what="a housekeeping run"
            )
            clock.advance(timedelta(days=1))  # the 03:00 window of 2 March is due
            wait_until(lambda: bool(client.list_runs(workflow="nightly")), what="a run")
            [run] = client.list_runs(workflow="nightly")
            wait_until(settled(client, [run]), what="the cron run to finish")
        assert client.inspect_run(run.id).context["window"] == "2026-03-02T03:00:00+00:00"
        assert len(client.list_runs(workflow="nightly")) == 1


def _housekeeping_runs(client: Client) -> int:
    with client.database.read() as connection:
        return int(
            connection.execute(
                sa.text(
                    "SELECT count(*) FROM procrastinate_jobs "
                    "WHERE task_name = :task AND status = 'succeeded'"
                ),
                {"task": HOUSEKEEPING_TASK_NAME},
            ).scalar_one()
        )


def test_one_executor_per_procrastinate_app(tmp_path: Path) -> None:
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
    ProcrastinateExecutor(app)
    with pytest.raises(ExecutorNotReady, match="one ProcrastinateExecutor per Procrastinate app"):
        ProcrastinateExecutor(app)


@on_postgres
def test_a_run_s_priority_is_its_procrastinate_jobs_priority(client: Client) -> None:
    normal = client.start_run("one_step")
    urgent = client.start_run("one_step", priority=500)
    with client.database.read() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT args->'payload'->>'run_id', priority FROM procrastinate_jobs "
                "WHERE task_name = :task"
            ),
            {"task": TASK_NAME},
        ).all()
    # Procrastinate also fetches higher priorities first: the value goes through as it is.
    assert dict(rows) == {normal.id: 0, urgent.id: 500}


@on_postgres
@pytest.mark.usefixtures("in_process_worker")
def test_a_database_error_deferring_the_next_step_is_retried_not_a_step_failure(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Procrastinate defers jobs on the driver's connection and wraps the driver's errors in
    # its own: a statement timeout there was taken for the executor refusing the job, and the
    # finished step failed for good (its outcome "not stored"). It is the database failing:
    # the outcome is written again, as for any other statement.
    run = client.start_run("five_steps")
    manager = _executor(client)._manager
    defer = manager.batch_defer_jobs
    failed: list[str] = []

    def timing_out_once(jobs: list[Any], connection: Any = None) -> Any:
        if not failed:
            failed.append("once")
            try:
                connection.execute("SET LOCAL statement_timeout = 1")
                connection.execute("SELECT pg_sleep(1)")
            except psycopg.Error as exc:  # what Procrastinate's connector does with it
                raise procrastinate.exceptions.ConnectorException from exc
        return defer(jobs, connection=connection)

    monkeypatch.setattr(manager, "batch_defer_jobs", timing_out_once)
    with caplog.at_level(logging.WARNING):
        finished = client.wait_for_run(run.id, timeout=60)
    assert failed == ["once"]
    assert finished.status == "completed", finished.last_error
    assert all(statuses == ["completed"] for statuses in attempts_by_step(client, run.id).values())
    assert "database unavailable while recording a step outcome" in caplog.text
