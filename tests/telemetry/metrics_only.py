"""A process with a meter provider and no tracer provider.

``python -m tests.telemetry.metrics_only``

Prints, as JSON, whether the library saw anything to record before and after the provider was
installed, and the run counters a quickstart run left in the provider's reader.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum

from samples import quickstart
from squidmesh_sdk import telemetry


def main() -> None:
    before = (telemetry.recording(), telemetry.tracing())
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
    json.dump(
        {"before": before, "after": after, "status": run.status, "counts": counts}, sys.stdout
    )


if __name__ == "__main__":
    main()
