"""OpenTelemetry spans and metrics, through ``opentelemetry-api`` only.

The library never configures a provider or exporter: with none installed every call here is a
cheap no-op; with the SDK configured by the host, runs show up in its collector.

One trace per run, across processes and restarts:

```
run <workflow>                      the start: creating the run, dispatching its first work
├── send <step>            PRODUCER  every job handed to the executor (its traceparent rides
│                                    in the job payload)
├── process <step>         CONSUMER  every attempt, linked to the send that queued it; run
│   │                                status transitions are events on it
│   └── send <next step>   PRODUCER
├── send compensation <workflow>  PRODUCER  the saga rollback handed to the executor
├── compensate <workflow>  CONSUMER  the rollback, linked to its send
│   └── compensate <step>            each saga callback
├── approve|reject|unblock|cancel|replay <workflow>   operator actions
└── run <workflow> <status>          emitted when the run finishes, from its real start time
                                     to its end: the run's whole life as one span
```

The run's root context (W3C ``traceparent`` / ``tracestate``, never baggage) is stored on the
run row, so spans made later in any process join its trace; a run started where nothing is
traced gets a generated context (:func:`generated_carrier`), so the spans of traced workers
still form one trace. A cron activation is queued under a ``send cron <workflow>`` PRODUCER
span of its own; the run it starts links to it. Payload values never go into span attributes.
A failure is described by its ``error.type``, an ``exception`` event and a status description
with the exception's message, unless messages are redacted (:func:`set_redact_messages`, or
the environment variable ``SQUIDMESH_TELEMETRY_REDACT_MESSAGES=1``): messages may quote the
values they were computed from.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.environment_variables import (
    OTEL_PYTHON_METER_PROVIDER,
    OTEL_PYTHON_TRACER_PROVIDER,
)
from opentelemetry.metrics import _internal as _metrics_internal
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "ATTEMPT",
    "FROM_STATUS",
    "OUTCOME",
    "RUN_ID",
    "STEP",
    "TO_STATUS",
    "TRIGGER",
    "WORKFLOW",
    "carrier_of",
    "context_of",
    "generated_carrier",
    "meter",
    "metering",
    "recording",
    "redacting_messages",
    "route_taken",
    "set_redact_messages",
    "span",
    "tracer",
    "tracing",
]

_VERSION = "0.1.0.dev0"

WORKFLOW = "squidmesh.workflow"
RUN_ID = "squidmesh.run_id"
STEP = "squidmesh.step"
ATTEMPT = "squidmesh.attempt"
TRIGGER = "squidmesh.trigger"
FROM_STATUS = "squidmesh.from_status"
TO_STATUS = "squidmesh.to_status"
OUTCOME = "squidmesh.outcome"
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_BATCH_COUNT = "messaging.batch.message_count"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
ERROR_TYPE = "error.type"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"

REDACT_ENV = "SQUIDMESH_TELEMETRY_REDACT_MESSAGES"
"""Set to ``1`` (or ``true``/``yes``) to keep exception messages out of spans from the start."""

_redact = [os.environ.get(REDACT_ENV, "").strip().lower() in ("1", "true", "yes")]


def set_redact_messages(redact: bool) -> None:
    """Keep exception messages out of spans (``True``) or record them (``False``, the default).

    When redacted, a failed span still gets status ERROR, ``error.type`` and an ``exception``
    event with ``exception.type``, but no status description and no ``exception.message``.
    Applies to the whole process, like the tracer provider. The environment variable
    ``SQUIDMESH_TELEMETRY_REDACT_MESSAGES=1`` sets it at import.
    """
    _redact[0] = redact


def redacting_messages() -> bool:
    """Whether exception messages are kept out of spans (see :func:`set_redact_messages`)."""
    return _redact[0]


SYSTEM = "squidmesh"

tracer = trace.get_tracer("squidmesh_sdk", _VERSION)
meter = metrics.get_meter("squidmesh_sdk", _VERSION)

# W3C trace context only: the global propagator may carry baggage, which must never reach a
# queue or a database row.
_propagator = TraceContextTextMapPropagator()

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def tracing() -> bool:
    """Whether a tracer provider is installed: spans could record (and so need attributes)."""
    return not _no_tracer_provider()


def metering() -> bool:
    """Whether a meter provider is installed: metrics could record."""
    return not _no_meter_provider()


def recording() -> bool:
    """Whether a tracer or a meter provider is installed: spans or metrics could record.

    ``False`` means every span event and metric would be dropped, so the work of making them
    (attributes, durations) can be skipped: the runtime's observer does it for every event.
    """
    # Asked at every event: while the API holds neither provider and the environment names
    # none (a process that traces nothing), that is the answer, without the checks below.
    if (
        getattr(trace, "_TRACER_PROVIDER", ...) is None
        and getattr(_metrics_internal, "_METER_PROVIDER", ...) is None
        and not _PROVIDER_FROM_ENVIRONMENT
        and not _METER_PROVIDER_FROM_ENVIRONMENT
    ):
        return False
    return not _no_tracer_provider() or not _no_meter_provider()


_NO_OP_PROVIDERS = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
_PROVIDER_FROM_ENVIRONMENT = OTEL_PYTHON_TRACER_PROVIDER in os.environ
# The proxy is a private class of the API: if a release renames it, a provider is assumed.
_NO_OP_METER_PROVIDERS: tuple[type, ...] = (
    metrics.NoOpMeterProvider,
    *filter(None, [getattr(_metrics_internal, "_ProxyMeterProvider", None)]),
)
_METER_PROVIDER_FROM_ENVIRONMENT = OTEL_PYTHON_METER_PROVIDER in os.environ


def _no_meter_provider() -> bool:
    """Whether no meter provider is installed: every metric would be a no-op.

    Read as :func:`_no_tracer_provider` does: the module global first, which is ``None`` until
    a provider is set (the proxy provider then hands its instruments the real ones).
    """
    installed = getattr(_metrics_internal, "_METER_PROVIDER", ...)
    known = _final[_METER]
    if known is not None and known[0] is installed:
        return known[1]
    if installed is None and not _METER_PROVIDER_FROM_ENVIRONMENT:
        return True
    none = isinstance(metrics.get_meter_provider(), _NO_OP_METER_PROVIDERS)
    _remember(_METER, getattr(_metrics_internal, "_METER_PROVIDER", None), none)
    return none


def _no_tracer_provider() -> bool:
    """Whether no tracer provider is installed: every span would be a no-op.

    Until one is installed, ``trace.get_tracer_provider()`` looks the environment up at every
    call (for a provider named there), a few of which every step makes; the module global it
    reads first tells the same without it, unless the environment names a provider.
    """
    installed = getattr(trace, "_TRACER_PROVIDER", ...)
    known = _final[_TRACER]
    if known is not None and known[0] is installed:
        return known[1]
    if installed is None and not _PROVIDER_FROM_ENVIRONMENT:
        return True
    none = isinstance(trace.get_tracer_provider(), _NO_OP_PROVIDERS)
    # Read again: getting the provider may have installed the one the environment names.
    _remember(_TRACER, getattr(trace, "_TRACER_PROVIDER", None), none)
    return none


_TRACER, _METER = 0, 1
_final: list[tuple[object, bool] | None] = [None, None]
"""The answers of :func:`_no_tracer_provider` and :func:`_no_meter_provider` for the API's
global provider they were found for. The API sets that provider once and refuses to replace
it, so the answer holds while it is the same object (a step asks about seven times); a test
suite that resets the API's globals gets a new answer."""


def _remember(kind: int, installed: object, none: bool) -> None:
    if installed is not None:  # still unset (or a release that renamed the global)
        _final[kind] = (installed, none)


def nanoseconds(moment: datetime) -> int:
    """An aware datetime as OpenTelemetry's integer nanoseconds since the epoch (exact)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def carrier_of(span_context_source: Span | None = None) -> dict[str, str] | None:
    """The W3C ``traceparent`` (and ``tracestate``) of a span, or of the current one.

    ``None`` when there is nothing to carry (no SDK, so the span does not record).
    """
    target = span_context_source if span_context_source is not None else trace.get_current_span()
    context = target.get_span_context()
    if not context.is_valid:
        return None
    # What ``TraceContextTextMapPropagator.inject`` writes for a valid context, without the
    # context it would build and read back: every dispatch asks (tests compare the two).
    ids = f"{context.trace_id:032x}-{context.span_id:016x}"
    carrier = {"traceparent": f"00-{ids}-{context.trace_flags:02x}"}
    if context.trace_state:
        carrier["tracestate"] = context.trace_state.to_header()
    return carrier


def generated_carrier() -> dict[str, str]:
    """A fresh, sampled W3C context for a run started where nothing is traced.

    Its span never exists (nothing recorded it), but every span that later joins the run's
    trace, in traced workers, shares its trace id: one trace per run all the same.
    """
    trace_id = random.getrandbits(128) or 1
    span_id = random.getrandbits(64) or 1
    return {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"}


def consumer_attributes(queue: str | None, message_id: str | None) -> dict[str, Any]:
    """The messaging attributes of a CONSUMER span (``process``, ``compensate``) of a job."""
    return {
        MESSAGING_SYSTEM: SYSTEM,
        MESSAGING_OPERATION: "process",
        MESSAGING_OPERATION_NAME: "process",
        MESSAGING_DESTINATION: queue,
        MESSAGING_MESSAGE_ID: message_id,
    }


def context_of(carrier: Mapping[str, Any] | None) -> otel_context.Context | None:
    """The context a carrier (a run's ``trace_context``, a payload's ``trace``) describes."""
    if not carrier:
        return None
    traceparent = carrier.get("traceparent")
    if not isinstance(traceparent, str):
        return None
    tracestate = carrier.get("tracestate")
    return _extract(traceparent, tracestate if isinstance(tracestate, str) else None)


@functools.lru_cache(maxsize=1024)
def _extract(traceparent: str, tracestate: str | None) -> otel_context.Context:
    # A run's context is parsed again for every span of the run: parse each string once.
    headers = {"traceparent": traceparent}
    if tracestate is not None:
        headers["tracestate"] = tracestate
    return _propagator.extract(headers)


def link_to(carrier: Mapping[str, Any] | None) -> list[Link]:
    """A link to the span a carrier describes (a consumer's link to its producer)."""
    parent = context_of(carrier)
    if parent is None:
        return []
    span_context = trace.get_current_span(parent).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
    start_time: datetime | None = None,
    new_trace: bool = False,
) -> AbstractContextManager[Span]:
    """Start a current span, a child of ``parent`` (a carrier) or of the current span.

    With ``new_trace`` the span is the root of a trace of its own, linked to the current span
    (a run started during an HTTP request gets its own trace, linked to the request's).
    An exception leaving the block fails the span (:func:`fail`).
    Without a tracer provider and any trace to join, the block runs under no span at all:
    the span it gets is the invalid, non-recording one (even a no-op span costs more per step
    than the database work of some statements).

    The span starts when the ``with`` block is entered. The context managers returned are
    classes, not ``@contextmanager`` generators: a step
    makes two or three spans, and a generator, its frame and ``contextlib``'s wrapper cost
    more than some of its statements.
    """
    parent_context = context_of(parent)
    if _no_tracer_provider():
        if parent_context is None and not trace.get_current_span().get_span_context().is_valid:
            return _NO_SPAN
        # What the no-op tracer does (the parent's context becomes current, so work queued
        # inside still carries the run's trace), without its layers: a step makes several
        # spans, and those layers cost more than some of its statements.
        current = trace.INVALID_SPAN if new_trace else trace.get_current_span(parent_context)
        if not isinstance(current, trace.NonRecordingSpan):
            current = trace.NonRecordingSpan(current.get_span_context())
        return _Current(current)
    if new_trace:
        caller = trace.get_current_span().get_span_context()
        links = [*links, Link(caller)] if caller.is_valid else links
        parent_context = otel_context.Context()
    if attributes and None in attributes.values():
        attributes = {k: v for k, v in attributes.items() if v is not None}
    # What ``start_as_current_span`` does, without its two generator-based context managers
    # (``use_span`` inside it): a step makes two spans, and those layers cost a tenth of what
    # tracing adds to a step.
    start = functools.partial(
        tracer.start_span,
        name,
        context=parent_context,
        kind=kind,
        attributes=attributes,
        links=links,
        start_time=nanoseconds(start_time) if start_time is not None else None,
        # Recorded by fail(): without the stack, and without the message when redacted.
        record_exception=False,
        set_status_on_exception=False,
    )
    return _Started(start)


_NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)
"""The block runs under no span; ``as`` gives the invalid one (stateless, shared)."""


class _Current:
    """The block runs with ``span`` (not recording: the no-op tracer's) current."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, *_exc: object) -> None:
        otel_context.detach(self._token)


class _Started:
    """The block runs with the span ``start`` starts (on entry) current.

    An exception leaving the block fails it; then it is detached and ended, in that order,
    also when failing it raises.
    """

    __slots__ = ("_span", "_start", "_token")

    def __init__(self, start: Callable[[], Span]) -> None:
        self._start = start

    def __enter__(self) -> Span:
        self._span = span = self._start()
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(
        self, _type: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        try:
            if exc is not None:
                fail(self._span, exc)
        finally:
            otel_context.detach(self._token)
            self._span.end()


def fail(target: Span, exc: BaseException | str, message: str | None = None) -> None:
    """Mark ``target`` failed: status ERROR, ``error.type`` and an ``exception`` event.

    ``exc`` is the exception, or the qualified name of its type (an error read back from the
    run, with its ``message``). The message becomes the status description and the event's
    ``exception.message``, unless messages are redacted (:func:`set_redact_messages`): step
    code routinely quotes its inputs in them. The stack trace is never recorded.
    """
    if isinstance(exc, str):
        error_type = exc
    else:
        error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        message = str(exc)
    target.set_attribute(ERROR_TYPE, error_type)
    event: dict[str, Any] = {EXCEPTION_TYPE: error_type}
    description = None
    if message and not _redact[0]:
        event[EXCEPTION_MESSAGE] = description = message
    target.add_event("exception", event)
    target.set_status(Status(StatusCode.ERROR, description))


def route_taken(step: str, outcome: str, target: object) -> None:
    """Add a ``squidmesh.route_taken`` event to the current span: which route a step took.

    Recorded when there was a choice (a condition, a branch label, an error or timeout route);
    the span is the delivery's ``process`` span, or the operator action's.
    """
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event(
            "squidmesh.route_taken",
            {STEP: step, "squidmesh.outcome": outcome, "squidmesh.target": str(target)},
        )


def run_attributes(workflow: str, run_id: str, **more: Any) -> dict[str, Any]:
    """The attributes every span of a run carries."""
    return {WORKFLOW: workflow, RUN_ID: run_id, **{k: v for k, v in more.items() if v is not None}}


@contextmanager
def action(
    name: str, workflow: str, run_id: str, carrier: Mapping[str, Any] | None
) -> Iterator[Span]:
    """A span for an operator action on a run (approve, cancel...), in the run's trace."""
    with span(
        f"{name} {workflow}", parent=carrier, attributes=run_attributes(workflow, run_id)
    ) as current:
        yield current
