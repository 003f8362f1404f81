"""A process without global providers at first.

``python -m tests.telemetry.without_global_providers`` prints, as JSON:

- whether the library saw anything to record before and after a meter provider was installed
  (``before``, ``after``: ``telemetry.recording()`` and ``telemetry.tracing()``);
- the span events a run transition left on the current span when that span belongs to a
  tracer provider the host did not install globally (``host_span_events``);
- the run counters a quickstart run left in the meter provider's reader, installed with no
  tracer provider (``status``, ``counts``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from samples import quickstart
from squidmesh_sdk import telemetry
from squidmesh_sdk.runtime.events import RunTransitioned
from squidmesh_sdk.runtime.tracing import TelemetryObserver


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
        "status": run.status,
        "counts": counts,
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
