"""Spans as plain records, whether the SDK kept them in memory or they arrived over OTLP.

Both sources become :class:`Span` records (ids as hex strings, attributes with their types), so
the same :class:`Trace` assertions serve the in-memory tests, the cross-process test and the
test through the collector.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan

_KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS = {
    trace_pb2.Status.STATUS_CODE_UNSET: "UNSET",
    trace_pb2.Status.STATUS_CODE_OK: "OK",
    trace_pb2.Status.STATUS_CODE_ERROR: "ERROR",
}


@dataclass(frozen=True)
class Event:
    name: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class Span:
    """One span, with ids as lowercase hex (32 digits for traces, 16 for spans)."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    links: tuple[tuple[str, str], ...]
    attributes: Mapping[str, Any]
    events: tuple[Event, ...]
    status: str
    status_description: str | None
    start_ns: int
    end_ns: int
    resource: Mapping[str, Any] = field(default_factory=dict)

    @property
    def attempt(self) -> Any:
        return self.attributes.get("squidmesh.attempt")


def from_sdk(spans: Iterable[ReadableSpan]) -> list[Span]:
    """Spans an in-memory exporter kept."""
    records = []
    for span in spans:
        context = span.context
        assert context is not None
        records.append(
            Span(
                name=span.name,
                kind=span.kind.name,
                trace_id=f"{context.trace_id:032x}",
                span_id=f"{context.span_id:016x}",
                parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
                links=tuple(
                    (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}")
                    for link in span.links
                ),
                attributes=dict(span.attributes or {}),
                events=tuple(Event(e.name, dict(e.attributes or {})) for e in span.events),
                status=span.status.status_code.name,
                status_description=span.status.description,
                start_ns=span.start_time or 0,
                end_ns=span.end_time or 0,
                resource=dict(span.resource.attributes),
            )
        )
    return records


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind is not None else None


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _otlp_span(span: trace_pb2.Span, resource: Mapping[str, Any]) -> Span:
    return Span(
        name=span.name,
        kind=_KINDS[span.kind],
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex() or None,
        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
        attributes=_attributes(span.attributes),
        events=tuple(Event(e.name, _attributes(e.attributes)) for e in span.events),
        status=_STATUS[span.status.code],
        status_description=span.status.message or None,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        resource=resource,
    )


def from_otlp(resource_spans: Iterable[trace_pb2.ResourceSpans]) -> list[Span]:
    """Spans decoded from OTLP ``ResourceSpans``, with typed attribute values as sent."""
    return [
        _otlp_span(span, _attributes(group.resource.attributes))
        for group in resource_spans
        for scope in group.scope_spans
        for span in scope.spans
    ]


class Trace:
    """The spans of one trace, with tree helpers."""

    def __init__(self, spans: Sequence[Span]) -> None:
        trace_ids = {span.trace_id for span in spans}
        assert len(trace_ids) == 1, f"expected one trace, got {len(trace_ids)}"
        self.trace_id = trace_ids.pop()
        self.spans = sorted(spans, key=lambda span: (span.start_ns, span.end_ns))
        self.by_id = {span.span_id: span for span in self.spans}

    @property
    def root(self) -> Span:
        roots = [span for span in self.spans if span.parent_id not in self.by_id]
        assert len(roots) == 1, f"expected one root, got {[r.name for r in roots]}"
        return roots[0]

    def named(self, name: str) -> list[Span]:
        return [span for span in self.spans if span.name == name]

    def one(self, name: str) -> Span:
        found = self.named(name)
        assert len(found) == 1, f"expected one {name!r} span, got {len(found)}\n{self.render()}"
        return found[0]

    def children(self, span: Span) -> list[Span]:
        return [child for child in self.spans if child.parent_id == span.span_id]

    def linked(self, span: Span) -> list[Span]:
        """The spans ``span`` links to (each must be in this trace)."""
        found = []
        for trace_id, span_id in span.links:
            assert trace_id == self.trace_id, f"{span.name} links to another trace"
            assert span_id in self.by_id, f"{span.name} links to a span nobody exported"
            found.append(self.by_id[span_id])
        return found

    def render(self) -> str:
        """The tree as indented ``name [KIND]`` lines, children in start order.

        Process spans show their attempt; failed spans end with ``ERROR``.
        """
        lines: list[str] = []

        def walk(span: Span, depth: int) -> None:
            label = f"{span.name} [{span.kind}]"
            if span.name.startswith("process "):
                label += f" attempt={span.attempt}"
            if span.status == "ERROR":
                label += " ERROR"
            lines.append("  " * depth + label)
            for child in self.children(span):
                walk(child, depth + 1)

        walk(self.root, 0)
        return "\n".join(lines)


def traces(spans: Iterable[Span]) -> dict[str, Trace]:
    """Spans grouped by trace id."""
    groups: dict[str, list[Span]] = {}
    for span in spans:
        groups.setdefault(span.trace_id, []).append(span)
    return {trace_id: Trace(group) for trace_id, group in groups.items()}


def run_trace(spans: Iterable[Span], run_id: str) -> Trace:
    """The trace of run ``run_id``: the one whose spans carry its id."""
    spans = list(spans)
    ids = {s.trace_id for s in spans if s.attributes.get("squidmesh.run_id") == run_id}
    assert len(ids) == 1, f"run {run_id} is in {len(ids)} traces"
    return Trace([s for s in spans if s.trace_id in ids])


def check_links(trace: Trace) -> None:
    """Every ``process`` span is a child of the run's root and links to the ``send`` that queued
    it: a send span for its step (or a batch that named it) in the same trace."""
    root = trace.root
    processes = [span for span in trace.spans if span.name.startswith("process ")]
    assert processes, trace.render()
    for span in processes:
        assert span.parent_id == root.span_id, f"{span.name} is not a child of the run root"
        (send,) = trace.linked(span)
        assert send.kind == "PRODUCER", send
        step = span.attributes["squidmesh.step"]
        batch = send.attributes.get("squidmesh.steps") or ()
        assert send.attributes.get("squidmesh.step") == step or step in batch, (span, send)


# -- metrics ---------------------------------------------------------------------------------


def metric_points(reader: InMemoryMetricReader, name: str) -> dict[frozenset[Any], Any]:
    """The cumulative points of metric ``name``: attributes -> value (a sum), or
    ``(count, sum)`` for a histogram."""
    data = reader.get_metrics_data()
    points: dict[frozenset[Any], Any] = {}
    if data is None:
        return points
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    key = frozenset((point.attributes or {}).items())
                    if isinstance(point, HistogramDataPoint):
                        points[key] = (point.count, point.sum)
                    else:
                        points[key] = point.value
    return points


def metric_delta(
    before: Mapping[frozenset[Any], Any], after: Mapping[frozenset[Any], Any]
) -> dict[frozenset[Any], Any]:
    """What changed between two :func:`metric_points` snapshots (only changed points)."""
    delta: dict[frozenset[Any], Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, tuple):
            old_count, old_sum = old if old is not None else (0, 0.0)
            if value[0] != old_count:
                delta[key] = (value[0] - old_count, value[1] - old_sum)
        elif value != (old or 0):
            delta[key] = value - (old or 0)
    return delta


def attrs(**values: Any) -> frozenset[Any]:
    """A metric point key: ``attrs(**{"squidmesh.workflow": "x"})``."""
    return frozenset(values.items())


def assert_never_mentions(
    spans: Iterable[Span], secret: str, *, but_error_messages: bool = False
) -> None:
    """No span name, attribute, event or status says ``secret`` (a payload value).

    ``but_error_messages``: except where an exception's message goes (the status description
    and ``exception.message``), which messages quoting it may reach unless redacted.
    """
    for span in spans:
        texts = [span.name, repr(span.attributes)]
        if not but_error_messages:
            texts.append(span.status_description or "")
        for event in span.events:
            attributes = dict(event.attributes)
            if but_error_messages and event.name == "exception":
                attributes.pop("exception.message", None)
            texts.append(f"{event.name} {attributes!r}")
        leaks = [text for text in texts if secret in text]
        assert not leaks, f"span {span.name!r} carries a payload value: {leaks}"


SAGA_TREE = "\n".join(
    [
        "run saga_checkout [INTERNAL]",
        "  run saga_checkout failed [INTERNAL] ERROR",
        "  send reserve_inventory [PRODUCER]",
        "  process reserve_inventory [CONSUMER] attempt=1",
        "    send authorize_payment [PRODUCER]",
        "  process authorize_payment [CONSUMER] attempt=1",
        "    send capture_payment [PRODUCER]",
        "  process capture_payment [CONSUMER] attempt=1 ERROR",
        "    send capture_payment [PRODUCER]",
        "  process capture_payment [CONSUMER] attempt=2 ERROR",
        "    send compensation saga_checkout [PRODUCER]",
        "  compensate saga_checkout [CONSUMER]",
        "    compensate authorize_payment [INTERNAL]",
        "    compensate reserve_inventory [INTERNAL]",
    ]
)
"""The span tree of a run of ``samples.saga_checkout`` (two captures fail, two compensations)."""
