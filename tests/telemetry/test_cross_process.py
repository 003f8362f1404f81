"""One trace per run, even when its steps run in different worker processes.

The worker processes (``tests/telemetry/otel_worker.py``) export their spans over real OTLP/HTTP
to a receiver in this test, which decodes the protobuf requests; this process keeps its own
spans (the run's start) in memory. Together they must form the run's one trace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from squidmesh_sdk import Client
from tests.integration.worker.app import make_client
from tests.integration.worker.conftest import wait_until
from tests.telemetry.conftest import Spawn, Telemetry
from tests.telemetry.otlp_receiver import Receiver
from tests.telemetry.support import Trace, check_links, from_otlp

ROOT = Path(__file__).parents[2]


@pytest.fixture
def client(database_url: str) -> Iterator[Client]:
    with make_client(database_url) as instance:
        yield instance


def test_a_run_whose_steps_ran_in_two_worker_processes_is_one_trace(
    client: Client,
    spawn: Spawn,
    receiver: Receiver,
    telemetry: Telemetry,
    tmp_path: Path,
    database_url: str,
) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    run = client.start_run("gated", {"gate": str(gate), "started": str(started)})

    # The first worker runs "before", then "blocked", which waits at the gate; it is told to
    # stop while blocked runs, finishes it once the gate opens, and hands "after" back.
    first = spawn(database_url, receiver.endpoint, "worker-a")
    wait_until(started.exists, timeout=60, what="the first worker to reach the gate")
    first.request_stop()
    gate.touch()
    first.wait()
    midway = client.inspect_run(run.id)
    assert (midway.status, midway.current_step) == ("running", "after")

    second = spawn(database_url, receiver.endpoint, "worker-b")
    wait_until(
        lambda: client.inspect_run(run.id).status == "completed",
        timeout=60,
        what="the second worker to finish the run",
    )
    second.request_stop()
    second.wait()

    local = telemetry.spans()
    remote = from_otlp(receiver.resource_spans())
    assert {path for path, _ in receiver.requests} == {"/v1/traces"}
    services = {s.resource["service.name"]: s.resource["process.pid"] for s in remote}
    assert services.keys() == {"worker-a", "worker-b"}
    assert len({*services.values(), os.getpid()}) == 3, "three processes took part"

    trace = Trace([s for s in local + remote if s.attributes.get("squidmesh.run_id") == run.id])
    assert len(trace.spans) == len(local) + len(remote), "nothing outside the run's trace"
    by_service = {
        service: sorted(s.name for s in remote if s.resource["service.name"] == service)
        for service in services
    }
    assert by_service == {
        "worker-a": ["process before", "process blocked", "send after", "send blocked"],
        "worker-b": ["process after", "run gated completed"],
    }
    assert trace.render() == "\n".join(
        [
            "run gated [INTERNAL]",
            "  run gated completed [INTERNAL]",
            "  send before [PRODUCER]",
            "  process before [CONSUMER] attempt=1",
            "    send blocked [PRODUCER]",
            "  process blocked [CONSUMER] attempt=1",
            "    send after [PRODUCER]",
            "  process after [CONSUMER] attempt=1",
        ]
    )
    assert trace.root.attributes["squidmesh.run_id"] == run.id
    assert trace.root.resource["service.name"] == "squidmesh-tests"
    # Every process span, in either worker, is a child of the run's root (started here) and
    # links to the send span that queued its job, wherever that send ran.
    check_links(trace)
    after = trace.one("process after")
    (send_after,) = trace.linked(after)
    assert (send_after.resource["service.name"], after.resource["service.name"]) == (
        "worker-a",
        "worker-b",
    )
    assert send_after.parent_id == trace.one("process blocked").span_id
    # Typed attributes survived the trip: an int attempt, string ids.
    assert after.attributes["squidmesh.attempt"] == 1
    assert after.attributes["squidmesh.run_id"] == run.id
    assert send_after.attributes["messaging.destination.name"] == "default"
    assert isinstance(send_after.attributes["messaging.message.id"], str)
