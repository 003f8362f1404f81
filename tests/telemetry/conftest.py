"""The OpenTelemetry SDK, configured once for the session as a host application would.

The library only talks to ``opentelemetry-api``; these tests install the SDK globally (a
``TracerProvider`` exporting to memory, a ``MeterProvider`` with an in-memory reader) and read
back what the runtime recorded. Providers can be set once per process, so this happens once;
each test starts with an empty span exporter.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.telemetry import support
from tests.telemetry.otlp_receiver import Receiver


class Telemetry:
    """The session's exporter and metric reader."""

    def __init__(self) -> None:
        resource = Resource.create({"service.name": "squidmesh-tests"})
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])

    def spans(self) -> list[support.Span]:
        """Every span finished since the test started."""
        return support.from_sdk(self.exporter.get_finished_spans())


@pytest.fixture(scope="session")
def otel() -> Telemetry:
    installed = Telemetry()
    trace.set_tracer_provider(installed.tracer_provider)
    metrics.set_meter_provider(installed.meter_provider)
    return installed


@pytest.fixture(autouse=True)
def telemetry(otel: Telemetry) -> Iterator[Telemetry]:
    """The SDK, with no span left over from another test (before or after this one)."""
    otel.exporter.clear()
    yield otel
    otel.exporter.clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver on a free port of 127.0.0.1, stopped after the test."""
    server = Receiver()
    try:
        yield server
    finally:
        server.close()
