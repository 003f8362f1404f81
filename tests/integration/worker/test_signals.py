"""Signals with real worker processes: nothing is lost when a worker is killed."""

from __future__ import annotations

import signal
from pathlib import Path

from squidmesh_sdk import Client
from squidmesh_sdk.store import jobs as job_store
from tests.integration.worker.conftest import Spawn, attempts_by_step, settled, wait_until


def test_a_signal_sent_while_the_worker_dies_is_consumed_by_the_next_worker(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    run = client.start_run("gated_signal", {"gate": str(gate), "started": str(started)})
    doomed = spawn_worker(database_url, lease=1.0)
    wait_until(started.exists, what="the step before the wait to start in the first worker")
    # Sent before the run reaches its wait: kept, durably.
    sent = client.signal(run.id, "paid", {"amount": 42}, idempotency_key="hook-1")
    assert sent.status == "pending"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    gate.touch()
    # A retried webhook after the crash is still one signal.
    assert client.signal(run.id, "paid", {"amount": 42}, idempotency_key="hook-1").duplicate
    spawn_worker(database_url, lease=1.0)
    wait_until(settled(client, [run]), what="the second worker to finish the run")
    done = client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["receipt"] == 42
    assert [(s.status, s.step) for s in done.signals or ()] == [("consumed", "paid")]
    assert attempts_by_step(client, run.id)["blocked"] == ["abandoned", "completed"]
    with client.database.read() as connection:
        assert job_store.list_jobs(connection) == []


def test_a_signal_sent_while_no_worker_runs_moves_the_run_on(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    gate.touch()
    run = client.start_run("gated_signal", {"gate": str(gate), "started": str(started)})
    first = spawn_worker(database_url, lease=1.0)
    wait_until(
        lambda: client.explain_run(run.id).reason == "waiting_for_signal",
        what="the run to wait for its signal",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    delivered = client.signal(run.id, "paid", {"amount": 7})
    assert (delivered.status, delivered.step) == ("consumed", "paid")
    # The step completed in the signal's transaction; its successor is queued for a worker.
    assert client.inspect_run(run.id).current_step == "receipt"
    spawn_worker(database_url, lease=1.0)
    wait_until(settled(client, [run]), what="a new worker to finish the run")
    assert client.inspect_run(run.id).context["receipt"] == 7
