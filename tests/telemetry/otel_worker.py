"""A worker process that exports its spans over OTLP/HTTP, as a traced deployment would.

``python -m tests.telemetry.otel_worker DATABASE_URL OTLP_TRACES_URL NAME STOPPING_FILE [APP]``

APP is the module whose ``make_client`` builds the client (``tests.integration.worker.app``
by default).

It configures the OpenTelemetry SDK (``service.name`` = NAME, a batch processor with the OTLP
HTTP exporter) and runs a :class:`~squidmesh_sdk.Worker` on the worker tests' workflows. On
SIGTERM it tells the worker to stop, creates STOPPING_FILE (from then on no new job starts
here), waits for the running jobs, and shuts the provider down so every span is exported
before it exits.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from squidmesh_sdk import Worker


def main() -> None:
    url, endpoint, name, stopping = sys.argv[1:5]
    app = sys.argv[5] if len(sys.argv) > 5 else "tests.integration.worker.app"
    make_client = importlib.import_module(app).make_client
    # SIGTERM is taken with sigwait in the main thread: block it before any thread starts.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    logging.basicConfig(level=logging.WARNING)
    provider = TracerProvider(
        resource=Resource.create({"service.name": name, "process.pid": os.getpid()})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=200)
    )
    trace.set_tracer_provider(provider)
    client = make_client(url)
    try:
        worker = Worker(client, concurrency=2, lease=5.0, poll_interval=0.05, cron=False)
        worker.start()
        signal.sigwait({signal.SIGTERM})
        worker.stop(wait=False)
        Path(stopping).touch()
        worker.stop()
    finally:
        client.close()
        provider.shutdown()


if __name__ == "__main__":
    main()
