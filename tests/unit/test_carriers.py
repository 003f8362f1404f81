"""``telemetry.carrier_of``: what every dispatched job carries of its sender's trace.

It writes the W3C headers itself, without the context the propagator would build and read
back; what it writes must be exactly what ``TraceContextTextMapPropagator.inject`` writes, and
``extract`` must give back the same span context.
"""

from __future__ import annotations

import random

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from squidmesh_sdk import telemetry

_PROPAGATOR = TraceContextTextMapPropagator()


def _injected(span: trace.Span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def _contexts() -> list[trace.SpanContext]:
    chosen = random.Random(18)  # noqa: S311 - test data, not secrets
    states = [
        TraceState(),
        TraceState([("vendor", "value")]),
        TraceState([("a", "1"), ("b@tenant", "two words")]),
    ]
    contexts = [
        # The smallest and largest ids: the zero padding and all 32 and 16 digits.
        trace.SpanContext(1, 1, is_remote=False, trace_flags=trace.TraceFlags(0)),
        trace.SpanContext(
            2**128 - 1, 2**64 - 1, is_remote=True, trace_flags=trace.TraceFlags(0xFF)
        ),
    ]
    contexts.extend(
        trace.SpanContext(
            chosen.getrandbits(128) or 1,
            chosen.getrandbits(64) or 1,
            is_remote=index % 2 == 0,
            trace_flags=trace.TraceFlags(chosen.choice([0, 1, 3])),
            trace_state=states[index % len(states)],
        )
        for index in range(60)
    )
    return contexts


@pytest.mark.parametrize("context", _contexts())
def test_a_valid_span_context_is_carried_as_the_propagator_injects_it(
    context: trace.SpanContext,
) -> None:
    span = trace.NonRecordingSpan(context)

    carrier = telemetry.carrier_of(span)

    assert carrier == _injected(span)
    assert ("tracestate" in carrier) is bool(context.trace_state)
    extracted = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    assert (extracted.trace_id, extracted.span_id, extracted.trace_flags) == (
        context.trace_id,
        context.span_id,
        context.trace_flags,
    )
    assert dict(extracted.trace_state) == dict(context.trace_state)


def test_without_an_argument_the_current_span_is_carried() -> None:
    context = trace.SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=trace.TraceFlags(1))
    span = trace.NonRecordingSpan(context)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        assert telemetry.carrier_of() == _injected(span)
    finally:
        otel_context.detach(token)


@pytest.mark.parametrize(
    "context",
    [
        trace.INVALID_SPAN_CONTEXT,
        trace.SpanContext(0, 5, is_remote=False),
        trace.SpanContext(5, 0, is_remote=False),
    ],
    ids=["invalid", "no trace id", "no span id"],
)
def test_an_invalid_span_context_is_not_carried(context: trace.SpanContext) -> None:
    # (The propagator would write a zero id of a context that is not the invalid one: a job
    # carries nothing rather than a traceparent no receiver accepts.)
    assert telemetry.carrier_of(trace.NonRecordingSpan(context)) is None
