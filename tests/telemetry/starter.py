"""Start, approve or replay a run of ``traced_app`` from a process of its own.

``python -m tests.telemetry.starter DATABASE_URL start|approve RUN_ID|replay RUN_ID [OTLP_URL]``

Without OTLP_URL the process installs no tracer provider (an untraced web app, say); with it,
its spans go to that OTLP/HTTP endpoint. Prints the run id.
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.telemetry.traced_app import SECRET, make_client


def main() -> None:
    url, action = sys.argv[1:3]
    rest = sys.argv[3:]
    run_id = rest.pop(0) if action != "start" else None
    provider = None
    if rest:
        provider = TracerProvider(resource=Resource.create({"service.name": "operator"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=rest[0])))
        trace.set_tracer_provider(provider)
    client = make_client(url)
    try:
        if action == "start":
            sys.stdout.write(client.start_run("traced", {"order_id": SECRET}).id + "\n")
        elif action == "approve":
            assert run_id is not None
            client.approve_run(run_id, actor="alice")
            sys.stdout.write(run_id + "\n")
        else:
            assert run_id is not None
            sys.stdout.write(client.replay_run(run_id).id + "\n")
    finally:
        client.close()
        if provider is not None:
            provider.shutdown()


if __name__ == "__main__":
    main()
