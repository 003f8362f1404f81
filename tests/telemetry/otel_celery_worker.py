"""A Celery worker process that exports its spans over OTLP/HTTP, as a traced deployment would.

``python -m tests.telemetry.otel_celery_worker DATABASE_URL BROKER_URL OTLP_TRACES_URL NAME``

It configures the OpenTelemetry SDK (``service.name`` = NAME, a batch processor with the OTLP
HTTP exporter), builds ``traced_app``'s client with a :class:`CeleryExecutor` on BROKER_URL and
runs a real ``celery worker`` (solo pool; its relay thread publishes delayed messages). On
SIGTERM Celery shuts down warmly (the running task finishes); the provider is then shut down so
every span is exported before the process exits.
"""

from __future__ import annotations

import logging
import os
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from squidmesh_sdk.executors.celery import CeleryExecutor
from tests.integration.executors.engines import QUEUE
from tests.telemetry.traced_app import make_celery_client


def main() -> None:
    url, broker, endpoint, name = sys.argv[1:5]
    logging.basicConfig(level=logging.WARNING)
    provider = TracerProvider(
        resource=Resource.create({"service.name": name, "process.pid": os.getpid()})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=200)
    )
    trace.set_tracer_provider(provider)
    client = make_celery_client(url, broker)
    executor = client.executor
    assert isinstance(executor, CeleryExecutor)
    try:
        executor.app.worker_main(
            [
                "worker",
                "--pool=solo",
                f"--queues={QUEUE}",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise
    finally:
        client.close()
        provider.shutdown()


if __name__ == "__main__":
    main()
