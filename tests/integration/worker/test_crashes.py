"""Crash recovery with real processes: SIGKILL, SIGTERM, many workers, a database restart."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, Database, DatabaseExecutor, Run, Worker
from squidmesh_sdk.store import jobs as job_store
from tests.integration.attempt_rows import every_attempt
from tests.integration.worker.app import WORKFLOWS
from tests.integration.worker.conftest import (
    Spawn,
    attempts_by_step,
    gated_run,
    settled,
    settled_or_restarting,
    wait_until,
)
from tests.integration.worker.processes import ROOT
from tools.pgserver import PrivateServer


def _no_jobs_left(client: Client) -> bool:
    with client.database.read() as connection:
        return job_store.list_jobs(connection) == []


def _explained_then_recovered(
    client: Client,
    database_url: str,
    spawn_worker: Spawn,
    run_id: str,
    gate: Path,
    then: str,
) -> None:
    """The run of a killed process, its step ``blocked`` left running: explained as running
    it; cancelled if ``then`` says so; then a new worker rescues the step (or ends the
    cancelled run) and no job is left."""
    explained = client.explain_run(run_id)
    assert (explained.status, explained.reason, explained.step) == (
        "running",
        "step_running",
        "blocked",
    )
    if then == "cancelled":
        assert client.cancel_run(run_id).status == "cancelling"
        explained = client.explain_run(run_id)
        assert (explained.reason, explained.details["running_steps"]) == (
            "cancelling",
            ["blocked"],
        )
    gate.touch()
    spawn_worker(database_url, lease=1.0)
    final = "completed" if then == "rescued" else "cancelled"
    wait_until(lambda: client.inspect_run(run_id).status == final, what=f"the run {final}")
    wait_until(lambda: _no_jobs_left(client), what="no job left")


@pytest.mark.parametrize("then", ["rescued", "cancelled"])
def test_a_killed_workers_step_is_finished_by_another_worker(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path, then: str
) -> None:
    # ``blocked`` follows ``before`` on the same worker: its job is ``before``'s row,
    # rewritten, keeping the lease it had (two thirds or more left). The worker is killed
    # while the step runs; the lease runs out and another worker takes the step over.
    run, gate, started = gated_run(client, tmp_path)
    doomed = spawn_worker(database_url, lease=1.0)
    wait_until(started.exists, what="the blocked step to start in the first worker")
    with client.database.read() as connection:
        (job,) = job_store.list_jobs(connection)
    assert (job.step, job.status) == ("blocked", "running")
    assert job.inserted_at < job.updated_at  # the row ``before`` was delivered from
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    _explained_then_recovered(client, database_url, spawn_worker, run.id, gate, then)
    if then == "cancelled":
        assert attempts_by_step(client, run.id) == {
            "before": ["completed"],
            "blocked": ["abandoned"],
        }
        return
    assert attempts_by_step(client, run.id) == {
        "before": ["completed"],
        "blocked": ["abandoned", "completed"],
        "after": ["completed"],
    }
    abandoned = client.inspect_run(run.id, include_history=True).step_run("blocked")
    assert abandoned is not None
    first = (abandoned.attempts or ())[0]
    assert first.error is not None
    assert (first.error["kind"], first.error["code"]) == ("abandoned", "worker_lost")


def test_a_killed_workers_compensation_is_taken_over_by_another_worker(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    gate, calls = tmp_path / "gate", tmp_path / "calls"
    run = client.start_run("gated_saga", {"gate": str(gate), "calls": str(calls)})
    doomed = spawn_worker(database_url, lease=1.0)
    wait_until(
        lambda: calls.exists() and calls.read_text().endswith("\n"),
        what="the compensation to start in the first worker",
    )
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    gate.touch()
    spawn_worker(database_url, lease=1.0)

    def refund() -> dict[str, object]:
        step_run = client.inspect_run(run.id, include_history=True).step_run("charge")
        assert step_run is not None
        return dict((step_run.recovery or {}).get("compensation") or {})

    wait_until(
        lambda: refund().get("status") == "completed" and _no_jobs_left(client),
        what="the second worker to take the compensation over",
    )
    assert calls.read_text().split() == ["1", "2"]
    state = refund()
    assert (state["attempt"], state["output"]) == (2, {"refunded": 2})
    assert state["taken_over"]["reason"] == "worker_lost"
    assert client.inspect_run(run.id).status == "failed"


def test_sigterm_lets_the_running_step_finish_and_loses_no_job(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    run, gate, started = gated_run(client, tmp_path)
    worker = spawn_worker(database_url, lease=1.0)
    wait_until(started.exists, what="the blocked step to start")
    worker.send_signal(signal.SIGTERM)
    gate.touch()
    assert worker.wait(timeout=60) == 0
    assert attempts_by_step(client, run.id)["blocked"] == ["completed"]
    spawn_worker(database_url, lease=1.0)
    wait_until(settled(client, [run]), what="another worker to finish the run")
    assert client.inspect_run(run.id).status == "completed"
    assert all(statuses == ["completed"] for statuses in attempts_by_step(client, run.id).values())


@pytest.mark.postgres
@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_four_worker_processes_complete_200_runs_without_running_a_step_twice(
    client: Client, database_url: str, spawn_worker: Spawn
) -> None:
    runs = [client.start_run("five_steps") for _ in range(200)]
    for _ in range(4):
        spawn_worker(database_url, lease=10.0, concurrency=2)
    wait_until(settled(client, runs), timeout=300, what="every run to finish")
    assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
    with client.database.read() as connection:
        attempts = every_attempt()
        statuses = connection.execute(
            sa.select(attempts.c.status, sa.func.count()).group_by(attempts.c.status)
        ).all()
    assert dict(statuses) == {"completed": 1000}
    assert _no_jobs_left(client)


@pytest.mark.postgres
def test_workers_reconnect_after_postgresql_restarts(
    private_server: PrivateServer, spawn_worker: Spawn
) -> None:
    database = Database(private_server.url)
    client = Client(database, WORKFLOWS, executor=DatabaseExecutor())
    try:
        client.migrate()
        runs = [client.start_run("five_steps") for _ in range(60)]
        for _ in range(2):
            spawn_worker(private_server.url, lease=5.0, concurrency=2)
        wait_until(
            lambda: any(client.inspect_run(run.id).status == "completed" for run in runs),
            what="the first completed run",
        )
        private_server.stop("fast")
        private_server.start()
        wait_until(
            lambda: settled_or_restarting(client, runs), timeout=180, what="every run to finish"
        )
        assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
        for run in runs:
            completed = [s.count("completed") for s in attempts_by_step(client, run.id).values()]
            assert completed == [1, 1, 1, 1, 1]
    finally:
        client.close()
        database.dispose()


def test_sqlite_with_four_worker_threads_and_1000_runs_never_reports_a_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/busy.db"
    # Durability is not under test here: NORMAL keeps a thousand commits quick on ext4.
    database = Database(url, sqlite_synchronous="NORMAL")
    client = Client(database, WORKFLOWS, executor=DatabaseExecutor())
    client.migrate()
    runs: list[Run] = []
    lock = threading.Lock()

    def start_many(count: int) -> None:
        for _ in range(count):
            run = client.start_run("one_step")
            with lock:
                runs.append(run)

    try:
        with caplog.at_level(logging.WARNING), Worker(client, concurrency=4, poll_interval=0.05):
            starters = [threading.Thread(target=start_many, args=(250,)) for _ in range(4)]
            for thread in starters:
                thread.start()
            for thread in starters:
                thread.join()
            wait_until(settled(client, runs), timeout=600, what="every run to finish")
        assert len(runs) == 1000
        assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
        assert not [r for r in caplog.records if "locked" in r.getMessage().lower()]
        assert not [r for r in caplog.records if r.name == "squidmesh_sdk.worker"]
    finally:
        client.close()
        database.dispose()


@pytest.mark.parametrize("then", ["rescued", "cancelled"])
def test_a_process_killed_while_running_a_run_it_started_beside_its_worker_loses_nothing(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path, then: str
) -> None:
    # The start's transaction leased the run's first job to the process's own idle worker and
    # started the step there (no claim). The process is killed while the step runs: the run
    # is explained as running its step, the lease expires, and another worker takes the step
    # over, or the run cancelled meanwhile ends cancelled.
    gate, started = tmp_path / "gate", tmp_path / "started"
    doomed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.worker.start_beside_worker",
            database_url,
            "1.0",
            str(gate),
            str(started),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert doomed.stdout is not None
        how, run_id = doomed.stdout.readline().split()
        assert how == "handed"
        wait_until(started.exists, what="the handed step to start in the starting process")
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
        if doomed.stdout is not None:
            doomed.stdout.close()
    _explained_then_recovered(client, database_url, spawn_worker, run_id, gate, then)
    expected = (
        {"blocked": ["abandoned", "completed"], "after": ["completed"]}
        if then == "rescued"
        else {"blocked": ["abandoned"]}
    )
    assert attempts_by_step(client, run_id) == expected
