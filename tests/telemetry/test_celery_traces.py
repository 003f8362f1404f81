"""The span tree on the Celery executor through a real collector, started by an untraced process.

The same run as ``test_worker_traces`` (a retry, an approval, a wait and a log step), but its
work goes through the Celery executor's outbox and a real Redis broker: an untraced process
starts it, a traced ``celery worker`` process (solo pool) exports over OTLP/HTTP to rotel, and
traced operator processes approve it, then replay it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.worker.conftest import wait_until
from tests.telemetry.otlp_receiver import Receiver
from tests.telemetry.support import Span, from_otlp
from tests.telemetry.test_worker_traces import starter, status
from tests.telemetry.traced_app import make_celery_client
from tests.telemetry.traced_run import check_run_trace
from tools.redisserver import RedisServer

ROOT = Path(__file__).parents[2]
QUEUE = "squidmesh"


class CeleryWorker:
    """A running ``otel_celery_worker`` process (its output goes to a file)."""

    def __init__(self, url: str, broker: str, endpoint: str, directory: Path) -> None:
        self.log = directory / "celery-worker.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.telemetry.otel_celery_worker",
                    url,
                    broker,
                    endpoint,
                    "celery-worker",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        """SIGTERM (Celery's warm shutdown) and wait for a clean exit, spans exported."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the Celery worker did not exit within 60 s: {self.log.read_text()}")
        assert code == 0, self.log.read_text()


@pytest.fixture
def celery_worker(
    database_url: str, redis: RedisServer, collector: str, tmp_path: Path
) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(database_url, redis.url, collector, tmp_path)
    try:
        yield worker
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait(timeout=30)


def test_a_celery_run_with_a_retry_an_approval_and_a_replay_through_the_collector(
    celery_worker: CeleryWorker,
    collector: str,
    receiver: Receiver,
    database_url: str,
    redis: RedisServer,
) -> None:
    broker = redis.url
    client = make_celery_client(database_url, broker)
    run_id = starter(database_url, "start", broker=broker)  # no tracer provider there
    wait_until(lambda: status(client, run_id) == "paused", timeout=60, what="the approval")
    starter(database_url, "approve", run_id, collector, broker=broker)
    wait_until(lambda: status(client, run_id) == "completed", timeout=60, what="completion")
    replay_id = starter(database_url, "replay", run_id, collector, broker=broker)
    wait_until(lambda: status(client, replay_id) == "paused", timeout=60, what="the replay")
    stored = client.inspect_run(run_id).trace_context
    client.close()
    celery_worker.stop()

    def arrived() -> list[Span]:
        return from_otlp(receiver.resource_spans())

    def complete() -> bool:
        # The original run's 8 deliveries (a wait is two), the replay's 4, both actions' spans.
        names = [s.name for s in arrived()]
        processes = sum(name.startswith("process ") for name in names)
        return processes >= 11 and {"approve traced", "replay traced"} <= set(names)

    wait_until(complete, timeout=30, what="the collector to forward every span")
    trace, processes = check_run_trace(
        arrived(), run_id=run_id, replay_id=replay_id, stored=stored, destination=QUEUE
    )
    sends = [s for s in trace.spans if s.name.startswith("send ")]
    assert sends, "the worker and the operator sent the run's later work"
    for span in sends:
        assert span.kind == "PRODUCER"
        assert span.attributes["messaging.system"] == "squidmesh"
        assert span.attributes["messaging.operation.name"] == "send"
        assert span.attributes["messaging.destination.name"] == QUEUE  # the routing key
    # The outbox message's own id names it on both sides of the broker, once per delivery.
    ids = [s.attributes["messaging.message.id"] for s in processes]
    assert len(set(ids)) == len(ids), "one message per delivery"
