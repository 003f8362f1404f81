"""The OpenTelemetry SDK, configured once for the session as a host application would.

The library only talks to ``opentelemetry-api``; these tests install the SDK globally (a
``TracerProvider`` exporting to memory, a ``MeterProvider`` with an in-memory reader) and read
back what the runtime recorded. Providers can be set once per process, so this happens once;
each test starts with an empty span exporter.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.integration.worker.conftest import wait_until
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


MISSING_ROTEL = (
    "the rotel collector binary is missing ({path}); install the dev extra "
    "(pip install -e '.[dev]', which pins rotel==0.0.1a15) — ./scripts/bootstrap does"
)


def rotel_agent() -> Path:
    """The ``rotel-agent`` binary of the installed ``rotel`` wheel; fails the test if absent."""
    try:
        import rotel
    except ImportError:
        pytest.fail(MISSING_ROTEL.format(path="package rotel not installed"), pytrace=False)
    path = Path(rotel.__file__).parent / "rotel-agent"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(MISSING_ROTEL.format(path=path), pytrace=False)
    return path


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def collector(receiver: Receiver, tmp_path: Path) -> Iterator[str]:
    """A rotel collector forwarding to ``receiver``; yields its OTLP/HTTP traces endpoint."""
    agent = rotel_agent()
    http_port, grpc_port = free_ports(2)
    output = tmp_path / "rotel.out"
    command = [
        str(agent),
        "start",
        "--otlp-http-endpoint",
        f"127.0.0.1:{http_port}",
        "--otlp-grpc-endpoint",
        f"127.0.0.1:{grpc_port}",
        "--exporter",
        "otlp",
        "--otlp-exporter-protocol",
        "http",
        "--otlp-exporter-endpoint",
        f"http://127.0.0.1:{receiver.port}",
        "--otel-resource-attributes",
        "via=rotel",
        "--pid-file",
        str(tmp_path / "rotel.pid"),
        "--log-file",
        str(tmp_path / "rotel.log"),
    ]
    with output.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: accepts(http_port) or process.poll() is not None,
            timeout=30,
            what="rotel to listen",
        )
        assert process.poll() is None, f"rotel exited: {output.read_text()}"
        yield f"http://127.0.0.1:{http_port}/v1/traces"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


ROOT = Path(__file__).parents[2]


class TracedWorker:
    """A running ``otel_worker`` process (its stderr goes to a file)."""

    def __init__(
        self, url: str, endpoint: str, name: str, directory: Path, app: str | None = None
    ) -> None:
        self.stopping = directory / f"{name}.stopping"
        self.log = directory / f"{name}.stderr"
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.telemetry.otel_worker",
                    url,
                    endpoint,
                    name,
                    str(self.stopping),
                    *([app] if app else []),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def request_stop(self) -> None:
        """SIGTERM; returns once the worker takes no new job (running ones go on)."""
        self.process.send_signal(signal.SIGTERM)
        wait_until(self.stopping.exists, timeout=60, what="the worker to acknowledge SIGTERM")

    def wait(self) -> None:
        """Wait for a clean exit (its spans are exported by then)."""
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit within 60 s of SIGTERM: {self.log.read_text()}")
        assert code == 0, self.log.read_text()


Spawn = Callable[..., TracedWorker]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start traced worker processes; any still running at the end are killed."""
    started: list[TracedWorker] = []

    def start(url: str, endpoint: str, name: str, app: str | None = None) -> TracedWorker:
        worker = TracedWorker(url, endpoint, name, tmp_path, app)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait(timeout=30)
