"""A process without global providers at first.

``python -m tests.telemetry.without_global_providers`` prints, as JSON:

- whether the library saw anything to record before and after a meter provider was installed
  (``before``, ``after``: ``telemetry.recording()`` and ``telemetry.tracing()``);
- the span events a run transition left on the current span when that span belongs to a
  tracer provider the host did not install globally (``host_span_events``);
- what a job queued there carries, and the span current while it is queued (``sending``):
  in the run's context, in such a host span, and outside any span;
- the run counters a quickstart run left in the meter provider's reader, installed with no
  tracer provider (``status``, ``counts``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from samples import quickstart
from squidmesh_sdk import telemetry
from squidmesh_sdk.port import payloads
from squidmesh_sdk.runtime import dispatcher
from squidmesh_sdk.runtime.events import RunTransitioned
from squidmesh_sdk.runtime.tracing import TelemetryObserver
from squidmesh_sdk.store.records import Run


def main() -> None:
    before = (telemetry.recording(), telemetry.tracing())
    with tempfile.TemporaryDirectory() as directory:
        first = quickstart.run_once(f"sqlite:///{Path(directory) / 'q.db'}")
    exporter = InMemorySpanExporter()
    host = TracerProvider()  # never installed globally
    host.add_span_processor(SimpleSpanProcessor(exporter))
    with host.get_tracer("host").start_as_current_span("host work"):
        TelemetryObserver().emit(RunTransitioned(first, "running", "completed"))
    host_span_events = [
        event.name for span in exporter.get_finished_spans() for event in span.events
    ]
    sending = {
        "in the run's context": _sent(first, None),
        "in a host span": _sent(first, host),
        "outside any span": _sent(replace(first, trace_context=None), None),
    }

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    after = (telemetry.recording(), telemetry.tracing())
    with tempfile.TemporaryDirectory() as directory:
        run = quickstart.run_once(f"sqlite:///{Path(directory) / 'q.db'}")
    counts: dict[str, float] = {}
    data = reader.get_metrics_data()
    assert data is not None  # a reader of an installed provider has data
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name.startswith("squidmesh.runs.") and isinstance(metric.data, Sum):
                    counts[metric.name] = sum(point.value for point in metric.data.data_points)
    report = {
        "before": before,
        "after": after,
        "host_span_events": host_span_events,
        "sending": sending,
        "status": run.status,
        "counts": counts,
    }
    json.dump(report, sys.stdout)


def _sent(run: Run, host: TracerProvider | None) -> dict[str, Any]:
    """What a job queued for ``run`` carries, and the span current where it is queued.

    With ``host``, under a recording span of that provider (not installed globally);
    otherwise under the run's own context, as a delivery's step is (if it has one).
    """
    with ExitStack() as stack:
        if host is not None:
            stack.enter_context(host.get_tracer("host").start_as_current_span("host work"))
        else:
            stack.enter_context(telemetry.span("process x", parent=run.trace_context))
        outer = trace.get_current_span()
        with dispatcher._sending("send x", run, ["x"], None):
            inside = trace.get_current_span()
            payload = payloads.step_payload(run.id, "x")
    return {
        "trace": payload.get("trace"),
        "current": telemetry.carrier_of(outer),
        "inside is the outer span": inside is outer,
        "inside records": inside.is_recording(),
        "inside's context": telemetry.carrier_of(inside),
    }


if __name__ == "__main__":
    main()
