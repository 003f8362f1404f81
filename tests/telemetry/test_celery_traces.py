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
from tests.telemetry.support import Span, Trace, assert_never_mentions, from_otlp
from tests.telemetry.test_worker_traces import starter, status, transitions
from tests.telemetry.traced_app import SECRET, make_celery_client
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
        # The original run's 7 deliveries and the replay's 4, both approval actions' spans.
        names = [s.name for s in arrived()]
        processes = sum(name.startswith("process ") for name in names)
        return processes >= 11 and {"approve traced", "replay traced"} <= set(names)

    wait_until(complete, timeout=30, what="the collector to forward every span")
    spans = arrived()
    assert {s.resource["via"] for s in spans} == {"rotel"}
    mine = [s for s in spans if s.attributes.get("squidmesh.run_id") == run_id]
    # One trace per run although its starter was untraced: the generated context on the run.
    assert stored is not None
    _, trace_id, root_id, _ = stored["traceparent"].split("-")
    assert {s.trace_id for s in mine} == {trace_id}
    trace = Trace(mine)
    processes = [s for s in trace.spans if s.name.startswith("process ")]
    assert [(s.name, s.attempt) for s in processes] == [
        ("process reserve", 1),
        ("process charge", 1),
        ("process charge", 2),
        ("process approval", 1),
        ("process settle", 1),
        ("process note", 1),
        ("process ship", 1),
    ]
    top = [*processes, trace.one("approve traced"), trace.one("run traced completed")]
    assert {s.parent_id for s in top} == {root_id}, "children of the run's (generated) root"
    for span in processes:
        assert span.kind == "CONSUMER"
        assert span.resource["service.name"] == "celery-worker"
        assert span.attributes["messaging.system"] == "squidmesh"
        assert span.attributes["messaging.operation.name"] == "process"
        assert span.attributes["messaging.destination.name"] == QUEUE  # the routing key
        assert isinstance(span.attributes["messaging.message.id"], str)
    sends = [s for s in trace.spans if s.name.startswith("send ")]
    assert sends, "the worker and the operator sent the run's later work"
    for span in sends:
        assert span.kind == "PRODUCER"
        assert span.attributes["messaging.system"] == "squidmesh"
        assert span.attributes["messaging.operation.name"] == "send"
        assert span.attributes["messaging.destination.name"] == QUEUE
    assert processes[0].links == (), "the untraced starter sent its first job without a span"
    for span in processes[1:]:
        (send,) = trace.linked(span)
        # The outbox message's id names the message on both sides of the broker.
        assert send.attributes["messaging.message.id"] == span.attributes["messaging.message.id"]
    ids = [s.attributes["messaging.message.id"] for s in processes]
    assert len(set(ids)) == len(ids), "one message per delivery"
    failed = processes[1]
    assert failed.status == "ERROR"
    assert failed.status_description == f"gateway timed out charging {SECRET}"
    assert failed.attributes["error.type"] == "builtins.ConnectionError"
    assert [dict(e.attributes) for e in failed.events if e.name == "exception"] == [
        {
            "exception.type": "builtins.ConnectionError",
            "exception.message": f"gateway timed out charging {SECRET}",
        }
    ]
    (retry,) = [e for e in failed.events if e.name == "retry scheduled"]
    assert retry.attributes["squidmesh.step"] == "charge"
    assert processes[3].attributes["squidmesh.outcome"] == "paused"
    assert transitions(trace.spans) == [
        ("process reserve", "pending", "running"),
        ("process charge", "running", "retrying"),
        ("process charge", "retrying", "running"),
        ("process approval", "running", "paused"),
        ("approve traced", "paused", "running"),
        ("process ship", "running", "completed"),
    ]
    assert_never_mentions(mine, SECRET, but_error_messages=True)

    # The replay: its own trace, rooted at a span carrying its trigger, linked to the action.
    action = trace.one("replay traced")
    again = Trace([s for s in spans if s.attributes.get("squidmesh.run_id") == replay_id])
    assert again.trace_id != trace.trace_id
    root = again.root
    assert root.name == "run traced"
    assert root.attributes["squidmesh.trigger"] == "order"
    assert root.attributes["squidmesh.replayed_from"] == run_id
    assert root.links == ((trace.trace_id, action.span_id),)
    assert [(s.name, s.attempt) for s in again.spans if s.name.startswith("process ")] == [
        ("process reserve", 1),
        ("process charge", 1),
        ("process charge", 2),
        ("process approval", 1),
    ]
