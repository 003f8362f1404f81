"""What every executor's span tree for ``traced_app``'s run must show, as a collector got it.

The run (a retry, an approval, a wait and a log step) is started by an untraced process, run by
a traced worker, approved and then replayed by traced operator processes. The database-queue
and Celery tests share these checks and add what is particular to their executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.telemetry.support import Span, Trace, assert_never_mentions
from tests.telemetry.traced_app import SECRET

PROCESSES = [
    ("process reserve", 1),
    ("process charge", 1),
    ("process charge", 2),
    ("process approval", 1),
    ("process settle", 1),  # the wait starts: its timer is queued
    ("process settle", 1),  # the timer's delivery ends it
    ("process note", 1),
    ("process ship", 1),
]
"""The original run's deliveries, in order, with their attempt numbers."""


def transitions(spans: list[Span]) -> list[tuple[str, str, str]]:
    return [
        (s.name, e.attributes["squidmesh.from_status"], e.attributes["squidmesh.to_status"])
        for s in spans
        for e in s.events
        if e.name == "run transition"
    ]


def check_run_trace(
    spans: list[Span],
    *,
    run_id: str,
    replay_id: str,
    stored: Mapping[str, Any] | None,
    destination: str,
) -> tuple[Trace, list[Span]]:
    """Check the original run's trace and its replay's; return the trace and its processes."""
    assert {s.resource["via"] for s in spans} == {"rotel"}
    mine = [s for s in spans if s.attributes.get("squidmesh.run_id") == run_id]
    # One trace per run although its starter was untraced: the generated context on the run.
    assert stored is not None
    _, trace_id, root_id, _ = stored["traceparent"].split("-")
    assert {s.trace_id for s in mine} == {trace_id}
    trace = Trace(mine)
    processes = [s for s in trace.spans if s.name.startswith("process ")]
    assert [(s.name, s.attempt) for s in processes] == PROCESSES
    top = [*processes, trace.one("approve traced"), trace.one("run traced completed")]
    assert {s.parent_id for s in top} == {root_id}, "children of the run's (generated) root"
    for span in processes:
        assert span.kind == "CONSUMER"
        assert span.attributes["messaging.system"] == "squidmesh"
        assert span.attributes["messaging.operation.name"] == "process"
        assert span.attributes["messaging.destination.name"] == destination
        assert isinstance(span.attributes["messaging.message.id"], str)
    assert processes[0].links == (), "the untraced starter sent its first job without a span"
    for span in processes[1:]:
        (send,) = trace.linked(span)
        assert send.attributes["messaging.message.id"] == span.attributes["messaging.message.id"]
    failed = processes[1]
    assert failed.status == "ERROR"
    assert failed.status_description == f"gateway timed out charging {SECRET}"
    assert failed.attributes["error.type"] == "builtins.ConnectionError"
    assert [dict(e.attributes) for e in failed.events if e.name == "exception"] == [
        {
            "exception.type": "builtins.ConnectionError",
            "exception.message": f"gateway timed out charging {SECRET}",
        }
    ]
    (retry,) = [e for e in failed.events if e.name == "retry scheduled"]
    assert retry.attributes["squidmesh.step"] == "charge"
    assert processes[3].attributes["squidmesh.outcome"] == "paused"
    assert transitions(trace.spans) == [
        ("process reserve", "pending", "running"),
        ("process charge", "running", "retrying"),
        ("process charge", "retrying", "running"),
        ("process approval", "running", "paused"),
        ("approve traced", "paused", "running"),
        ("process ship", "running", "completed"),
    ]
    assert_never_mentions(mine, SECRET, but_error_messages=True)

    # The replay: its own trace, rooted at a span carrying its trigger, linked to the action.
    action = trace.one("replay traced")
    again = Trace([s for s in spans if s.attributes.get("squidmesh.run_id") == replay_id])
    assert again.trace_id != trace.trace_id
    root = again.root
    assert root.name == "run traced"
    assert root.attributes["squidmesh.trigger"] == "order"
    assert root.attributes["squidmesh.replayed_from"] == run_id
    assert root.links == ((trace.trace_id, action.span_id),)
    assert [(s.name, s.attempt) for s in again.spans if s.name.startswith("process ")] == (
        PROCESSES[:4]
    )
    return trace, processes
