"""``telemetry.span``, the one way the library starts a span, when its block raises.

It starts the span and makes it current itself (not through the SDK's
``start_as_current_span``): an exception leaving the block must still fail the span, end it
and give the caller back its own current span.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace

from squidmesh_sdk import telemetry as squidmesh_telemetry
from tests.telemetry.conftest import Telemetry


def test_a_span_left_by_an_exception_fails_ends_and_restores_the_context(
    telemetry: Telemetry,
) -> None:
    current_inside: list[trace.Span] = []

    def refuse() -> None:
        with squidmesh_telemetry.span("inner", attributes={"kept": 1, "dropped": None}) as inner:
            current_inside.append(inner)
            current_inside.append(trace.get_current_span())
            raise ValueError("card refused")

    with trace.get_tracer("host").start_as_current_span("host work") as host:
        with pytest.raises(ValueError, match="card refused"):
            refuse()
        assert trace.get_current_span() is host
    inner, current = current_inside
    assert current is inner
    assert not inner.is_recording()  # ended
    assert trace.get_current_span() is trace.INVALID_SPAN

    (span,) = [s for s in telemetry.spans() if s.name == "inner"]
    (parent,) = [s for s in telemetry.spans() if s.name == "host work"]
    assert span.parent_id == parent.span_id
    assert span.status == "ERROR"
    assert span.status_description == "card refused"
    assert span.attributes == {"kept": 1, "error.type": "builtins.ValueError"}
    assert [(e.name, dict(e.attributes)) for e in span.events] == [
        (
            "exception",
            {"exception.type": "builtins.ValueError", "exception.message": "card refused"},
        )
    ]
