"""What `squidmesh worker` prints: a banner, one line per step, retry, failure, compensation and
run finished, and the cause of a failed delivery; `--log-format json` for machines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from squidmesh_sdk import Client
from squidmesh_sdk.store import schema
from tests.cli.app import DB_ENV_VAR, saga_client

ROOT = Path(__file__).parents[2]
SCRIPT = Path(sys.executable).parent / "squidmesh"
PAYLOAD = {"order_id": "o-7", "amount_cents": 1200}


def run_worker(database_url: str, until: object, *extra: str) -> str:
    """Start a worker process on the saga app, wait until ``until()``, stop it; its stderr."""
    env = {**os.environ, "SQUIDMESH_APP": "tests.cli.app:saga_client", DB_ENV_VAR: database_url}
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [str(SCRIPT), "worker", "--poll-interval", "0.1", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not until():  # type: ignore[operator]
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the worker did not get there"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == ""
    return err


def finished(client: Client, run_id: str) -> bool:
    run = client.inspect_run(run_id, include_history=True)
    if run.status != "failed":
        return False
    # The run fails before its compensation ran: wait for the rollback too.
    reserve = run.step_run("reserve_inventory")
    compensation = ((reserve.recovery or {}) if reserve else {}).get("compensation") or {}
    return compensation.get("status") == "completed"


def test_the_console_shows_each_step_retry_failure_and_compensation(database_url: str) -> None:
    os.environ[DB_ENV_VAR] = database_url
    try:
        with saga_client() as client:
            run = client.start_run("saga_checkout", PAYLOAD)
            err = run_worker(database_url, lambda: finished(client, run.id))
    finally:
        del os.environ[DB_ENV_VAR]
    short = f"saga_checkout {run.id[:8]}"
    lines = err.splitlines()
    assert "  workflow     saga_checkout (versions: fp-" in err
    assert f"{short}  reserve_inventory#1" in err
    for expected in (
        "reserve_inventory#1   started",
        "reserve_inventory#1   completed after ",
        "capture_payment#1     failed after ",
        "capture_payment#1     retry in ",
        "capture_payment#2     failed after ",
        f"{short}                        run failed",
        "reserve_inventory#1   compensated after ",
    ):
        assert any(expected in line for line in lines), (expected, err)
    failure = next(line for line in lines if "capture_payment#2     failed" in line)
    assert "PaymentDeclinedError: capture declined for " in failure
    assert "Traceback" not in err


def test_a_failed_delivery_logs_its_cause(database_url: str) -> None:
    os.environ[DB_ENV_VAR] = database_url
    try:
        with saga_client() as client:
            now = client.clock.now()
            with client.database.transaction(now) as tx:
                tx.connection.execute(
                    sa.insert(schema.jobs).values(
                        queue="default",
                        kind="step",
                        payload={"kind": "bogus"},
                        status="queued",
                        run_at=now,
                        deliveries=0,
                        rescues=0,
                        inserted_at=now,
                        updated_at=now,
                    )
                )

            def delivered() -> bool:
                with client.database.read() as connection:
                    row = connection.execute(sa.select(schema.jobs.c.deliveries)).first()
                return row is not None and row[0] >= 1

            err = run_worker(database_url, delivered, "--log-format", "json")
    finally:
        del os.environ[DB_ENV_VAR]
    records = [json.loads(line) for line in err.splitlines()]
    (failure,) = [r for r in records if r["message"] == "job delivery raised; retrying later"]
    assert failure["level"] == "WARNING"
    assert failure["error_type"] == "InvalidExecutorPayload"
    assert "unknown kind 'bogus'" in failure["error_message"]
    banner = next(r for r in records if r["message"] == "worker started")
    assert banner["queues"] == ["default"]
    assert list(banner["workflows"]) == ["saga_checkout"]
