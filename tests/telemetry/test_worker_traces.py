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
from tests.telemetry.support import Span, Trace, assert_never_mentions, from_otlp
from tests.telemetry.traced_app import BROKER_ENV, SECRET, make_client

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


def transitions(spans: list[Span]) -> list[tuple[str, str, str]]:
    return [
        (s.name, e.attributes["squidmesh.from_status"], e.attributes["squidmesh.to_status"])
        for s in spans
        for e in s.events
        if e.name == "run transition"
    ]


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
        # The original run's 7 deliveries and the replay's 4, both approval actions' spans.
        names = [s.name for s in arrived()]
        processes = sum(name.startswith("process ") for name in names)
        return processes == 11 and {"approve traced", "replay traced"} <= set(names)

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
        assert span.attributes["messaging.operation.name"] == "process"
        assert span.attributes["messaging.destination.name"] == "default"
        assert isinstance(span.attributes["messaging.message.id"], str)
    assert processes[0].links == (), "the untraced starter sent its first job without a span"
    for span in processes[1:]:
        (send,) = trace.linked(span)
        assert send.attributes["messaging.message.id"] == span.attributes["messaging.message.id"]
    failed = processes[1]
    assert failed.status == "ERROR"
    assert failed.status_description == f"gateway timed out charging {SECRET}"
    assert [dict(e.attributes) for e in failed.events if e.name == "exception"] == [
        {
            "exception.type": "builtins.ConnectionError",
            "exception.message": f"gateway timed out charging {SECRET}",
        }
    ]
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
