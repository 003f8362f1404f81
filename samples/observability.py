"""Trace a saga checkout with OpenTelemetry: the host configures the SDK, squidmesh does the rest.

Usage::

    python -m samples.observability                                      # spans on the console
    python -m samples.observability --otlp http://127.0.0.1:4318/v1/traces   # to a collector

squidmesh_sdk only talks to ``opentelemetry-api``; spans and metrics appear once the application
installs the SDK (``pip install -e '.[otel]'`` from a checkout), as ``configure`` below does.
The sample then runs ``samples.saga_checkout`` to its end (its capture step always fails, so
the run fails and its completed steps are compensated) on a temporary SQLite file with the
in-process executor, and prints the run's span tree.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from samples import saga_checkout
from squidmesh_sdk import Client, InlineExecutor, Run


def configure(otlp: str | None) -> tuple[TracerProvider, InMemorySpanExporter]:
    """Install the OpenTelemetry SDK, as the host application does (never the library).

    Spans go to the console, or with ``otlp`` to an OTLP/HTTP endpoint; a copy is kept in
    memory for the tree printed at the end.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": "squidmesh-samples"}))
    if otlp:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=_line)))
    kept = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    trace.set_tracer_provider(provider)
    return provider, kept


def run_checkout(database: str) -> Run:
    """Run the saga checkout to its end with the in-process executor; return the final run."""
    executor = InlineExecutor()
    with Client(database, [saga_checkout.workflow], executor=executor, observers=[]) as client:
        client.migrate()
        run = client.start_run(saga_checkout.workflow, {"order_id": "o-1001", "amount_cents": 4200})
        while (due := executor.next_due()) is not None:  # retries waiting for their delay
            time.sleep(max((due - client.clock.now()).total_seconds(), 0.0))
            executor.run_due()
        return client.inspect_run(run.id)


def span_tree(spans: Sequence[ReadableSpan]) -> str:
    """The spans as an indented tree, children in start order."""
    ids = {span.context.span_id for span in spans if span.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        attributes = span.attributes or {}
        notes = [span.kind.name]
        if "squidmesh.attempt" in attributes:
            notes.append(f"attempt {attributes['squidmesh.attempt']}")
        if "error.type" in attributes:
            notes.append(f"error {attributes['error.type']}")
        lines.append(f"{'  ' * depth}{span.name}  ({', '.join(notes)})")
        events = [e for e in span.events if e.name == "run transition"]
        for event in events:
            moves = event.attributes or {}
            change = f"{moves.get('squidmesh.from_status')} -> {moves.get('squidmesh.to_status')}"
            lines.append(f"{'  ' * depth}  * run transition {change}")
        for child in children.get(span.context.span_id if span.context else None, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return "\n".join(lines)


def _line(span: ReadableSpan) -> str:
    context = span.context
    trace_id = f"{context.trace_id:032x}" if context is not None else "?"
    return f"exported span {span.name!r} ({span.kind.name}) trace {trace_id}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samples.observability", description=__doc__)
    parser.add_argument(
        "--otlp", metavar="URL", help="export to this OTLP/HTTP traces endpoint instead"
    )
    args = parser.parse_args(argv)
    provider, kept = configure(args.otlp)
    try:
        with tempfile.TemporaryDirectory(prefix="squidmesh-observability-") as directory:
            run = run_checkout(f"sqlite:///{Path(directory) / 'squidmesh.db'}")
    finally:
        provider.shutdown()  # flushes the batch exporter
    print()
    print(f"run {run.id} of {run.workflow}: {run.status}")
    print(f"trace of the run ({'sent to ' + args.otlp if args.otlp else 'console'}):")
    print(span_tree(kept.get_finished_spans()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
