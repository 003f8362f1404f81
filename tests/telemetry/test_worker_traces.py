"""The database queue's span tree through a real collector, started by an untraced process.

An untraced process starts a run of ``traced_app`` (a retry, an approval, a wait and a log
step); a traced worker process exports over OTLP/HTTP to rotel, which forwards to a receiver
here. An operator process (traced) approves it, then replays it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from squidmesh_sdk import Client
from tests.integration.worker.conftest import wait_until
from tests.telemetry.conftest import Spawn
from tests.telemetry.otlp_receiver import Receiver
from tests.telemetry.support import Span, from_otlp
from tests.telemetry.traced_app import BROKER_ENV, make_client
from tests.telemetry.traced_run import check_run_trace

ROOT = Path(__file__).parents[2]
APP = "tests.telemetry.traced_app"


def starter(url: str, *args: str, broker: str | None = None) -> str:
    """Run ``tests.telemetry.starter``; with ``broker`` its client sends work through Celery."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if broker is not None:
        env[BROKER_ENV] = broker
    done = subprocess.run(
        [sys.executable, "-m", "tests.telemetry.starter", url, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def status(client: Client, run_id: str) -> str:
    return client.inspect_run(run_id).status


def test_a_worker_run_with_a_retry_an_approval_and_a_replay_through_the_collector(
    spawn: Spawn, collector: str, receiver: Receiver, database_url: str
) -> None:
    client = make_client(database_url)
    worker = spawn(database_url, collector, "worker", APP)
    run_id = starter(database_url, "start")  # no tracer provider in that process
    wait_until(lambda: status(client, run_id) == "paused", timeout=60, what="the approval")
    starter(database_url, "approve", run_id, collector)
    wait_until(lambda: status(client, run_id) == "completed", timeout=60, what="completion")
    replay_id = starter(database_url, "replay", run_id, collector)
    wait_until(lambda: status(client, replay_id) == "paused", timeout=60, what="the replay")
    stored = client.inspect_run(run_id).trace_context
    client.close()
    worker.request_stop()
    worker.wait()

    def arrived() -> list[Span]:
        return from_otlp(receiver.resource_spans())

    def complete() -> bool:
        # The original run's 8 deliveries (a wait is two), the replay's 4, both actions' spans.
        names = [s.name for s in arrived()]
        processes = sum(name.startswith("process ") for name in names)
        return processes == 12 and {"approve traced", "replay traced"} <= set(names)

    wait_until(complete, timeout=30, what="the collector to forward every span")
    check_run_trace(
        arrived(), run_id=run_id, replay_id=replay_id, stored=stored, destination="default"
    )
