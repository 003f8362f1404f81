"""Spans through a real collector: OTLP/HTTP exporter -> rotel -> a receiver in this test.

``rotel`` (pinned in the ``dev`` extra) is a PyPI wheel that ships the Rust collector binary
``rotel-agent``. It receives OTLP, batches, and exports OTLP/HTTP (gzip) onwards; here it also
stamps ``via=rotel`` on every resource, which proves the spans went through it. The traced
program is the observability sample, exporting with ``--otlp``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.worker.conftest import wait_until
from tests.telemetry.otlp_receiver import Receiver
from tests.telemetry.support import (
    SAGA_TREE,
    Trace,
    assert_never_mentions,
    check_links,
    from_otlp,
)

ROOT = Path(__file__).parents[2]


def test_spans_arrive_through_the_collector_with_their_tree_and_typed_attributes(
    collector: str, receiver: Receiver
) -> None:
    sample = subprocess.run(
        [sys.executable, "-m", "samples.observability", "--otlp", collector],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sample.returncode == 0, sample.stderr
    found = re.search(r"^run (\S+) of saga_checkout: failed$", sample.stdout, re.MULTILINE)
    assert found, sample.stdout
    run_id = found.group(1)

    # The sample flushed before exiting; the collector forwards its batch shortly after.
    wait_until(
        lambda: len(from_otlp(receiver.resource_spans())) >= 14,
        timeout=30,
        what="the collector to forward the sample's spans",
    )
    spans = from_otlp(receiver.resource_spans())
    agents = {headers.get("user-agent", "").split("/")[0] for _, headers in receiver.requests}
    assert agents == {"Rotel Rust"}, "every request came from the collector"
    assert {(s.resource["service.name"], s.resource["via"]) for s in spans} == {
        ("squidmesh-samples", "rotel")
    }

    trace = Trace(spans)  # one trace: fails if the spans span more than one
    assert trace.render() == SAGA_TREE
    check_links(trace)
    root = trace.root
    assert root.attributes == {
        "squidmesh.workflow": "saga_checkout",
        "squidmesh.run_id": run_id,
        "squidmesh.trigger": "checkout",
    }
    # Attribute types as received: ids are strings, attempts integers, batch lists arrays.
    for span in trace.spans:
        if span is root:
            continue
        assert span.parent_id in trace.by_id, span
        assert span.attributes["squidmesh.run_id"] == run_id
        assert isinstance(span.attributes["squidmesh.workflow"], str)
    attempts = [span.attempt for span in trace.spans if span.name.startswith("process ")]
    assert attempts == [1, 1, 1, 2]
    assert all(type(attempt) is int for attempt in attempts)
    capture = trace.named("process capture_payment")
    assert {s.attributes["error.type"] for s in capture} == {
        "samples.saga_checkout.PaymentDeclinedError"
    }
    assert {s.attributes["squidmesh.outcome"] for s in capture} == {"executed"}
    retry = next(e for e in capture[0].events if e.name == "retry scheduled")
    assert retry.attributes == {"squidmesh.step": "capture_payment", "squidmesh.retry.delay": 0.0}
    assert type(retry.attributes["squidmesh.retry.delay"]) is float
    send = trace.named("send capture_payment")[0]
    assert send.kind == "PRODUCER"
    assert send.attributes["messaging.system"] == "squidmesh"
    assert send.attributes["messaging.operation.type"] == "send"
    life = trace.one("run saga_checkout failed")
    assert life.start_ns < life.end_ns
    assert life.status == "ERROR"
    assert_never_mentions(spans, "o-1001", but_error_messages=True)  # the sample's order id
