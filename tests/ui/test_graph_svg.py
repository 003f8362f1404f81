"""The graph and run read models take what a later workflow model adds in their stride.

Unknown edge kinds and edge fields (labels, conditions, timeouts), unknown step kinds and
statuses (``skipped``, anything else), loops (back edges) and iteration keys (``name@2``,
``name[3]``) must draw and read sensibly without a change here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from squidmesh_sdk.store.records import Attempt, Run, StepRun
from squidmesh_sdk.ui.graph_svg import NodeState, render_graph
from squidmesh_sdk.ui.present import json_html, step_base, trace_id
from squidmesh_sdk.ui.run_view import attempt_rows, node_states, taken_edges

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
RUN_ID = "01a2495a-0000-7000-8000-000000000001"


def definition(*edges: dict[str, Any], steps: tuple[str, ...] = ("a", "b", "c")) -> dict[str, Any]:
    return {
        "name": "wf",
        "entry_steps": [steps[0]],
        "steps": [{"name": name, "kind": "function"} for name in steps],
        "edges": list(edges),
    }


def test_unknown_edge_kinds_and_fields_are_drawn_with_their_labels() -> None:
    svg = str(
        render_graph(
            definition(
                {"source": "a", "target": "b", "kind": "ok", "label": "approved_big"},
                {
                    "source": "a",
                    "target": "c",
                    "kind": "when",
                    "condition": {"path": "output.total", "op": ">", "value": 100},
                },
                {"source": "b", "target": "__complete__", "kind": "timeout", "timeout": 30},
            )
        )
    )
    assert 'class="edge k-ok"' in svg
    assert 'class="edge k-when"' in svg
    assert ">ok · approved_big</text>" in svg
    assert ">when · path=output.total op=&gt; value=100</text>" in svg
    assert ">timeout · 30</text>" in svg
    assert ">complete</text>" in svg


def test_routes_between_the_same_two_steps_are_one_arrow_saying_each() -> None:
    svg = str(
        render_graph(
            definition(
                {"source": "a", "target": "b", "kind": "ok"},
                {"source": "a", "target": "b", "kind": "error", "recovery": "retry_then_route"},
                {"source": "a", "target": "c", "kind": "route", "label": "big"},
                {"source": "a", "target": "c", "kind": "route", "label": "huge"},
                {"source": "b", "target": "c", "kind": "after"},
            ),
            taken=frozenset({("a", "c")}),
        )
    )
    paths = re.findall(r'<path class="([^"]*)"[^>]*data-source="a" data-target="(\w)"', svg)
    assert paths == [("edge k-ok", "b"), ("edge k-route taken", "c")]
    assert ">ok / error: retry_then_route</text>" in svg
    assert ">route · big / route · huge</text>" in svg
    assert "<title>a → b (ok / error: retry_then_route)</title>" in svg


def test_unknown_statuses_and_kinds_are_spelled_out_and_escaped() -> None:
    shape = definition({"source": "a", "target": "b", "kind": "after"})
    shape["steps"][1]["kind"] = "signal"
    svg = str(
        render_graph(
            shape,
            {"a": NodeState("skipped"), "b": NodeState("<odd status>", "1 of 2 waiting")},
        )
    )
    assert 'class="node k-function st-skipped" data-step="a" data-status="skipped"' in svg
    assert 'class="node k-signal st-odd-status"' in svg
    assert "signal · &lt;odd status&gt;" in svg
    assert "<odd" not in svg
    assert ">1 of 2 waiting</text>" in svg


def test_a_loop_is_drawn_as_a_back_edge_and_layers_stay_finite() -> None:
    svg = str(
        render_graph(
            definition(
                {"source": "a", "target": "b", "kind": "ok"},
                {"source": "b", "target": "c", "kind": "ok"},
                {"source": "c", "target": "a", "kind": "again"},
                {"source": "c", "target": "c", "kind": "retry"},
            )
        )
    )
    assert svg.count("edge k-again back") == 1
    assert svg.count("edge k-retry back") == 1
    tops = {
        name: float(y)
        for name, y in re.findall(
            r'data-step="([a-z])"[^>]*><a[^>]*><rect x="[\d.]+" y="([\d.]+)"', svg
        )
    }
    assert tops["a"] < tops["b"] < tops["c"]


def test_an_edge_across_layers_goes_around_the_nodes_between() -> None:
    svg = str(
        render_graph(
            definition(
                {"source": "a", "target": "b", "kind": "after"},
                {"source": "b", "target": "c", "kind": "after"},
                {"source": "a", "target": "c", "kind": "after"},
            )
        )
    )
    (path,) = re.findall(
        r'<path class="edge k-after" d="([^"]+)"[^>]*data-source="a" data-target="c"', svg
    )
    assert path.count("C") == 2  # through one waypoint: two curve segments


def attempt(number: int, status: str, start: float, end: float) -> Attempt:
    return Attempt(
        id=f"att-{number}",
        step_run_id="sr",
        number=number,
        status=status,  # type: ignore[arg-type]
        error=None if status == "completed" else {"message": "boom", "type": "E"},
        inserted_at=T0 + timedelta(seconds=start),
        updated_at=T0 + timedelta(seconds=end),
    )


def step_run(key: str, status: str, at: float, *attempts: Attempt) -> StepRun:
    return StepRun(
        id=f"sr-{key}",
        run_id=RUN_ID,
        step=key,
        status=status,  # type: ignore[arg-type]
        input={},
        output=None,
        last_error=None,
        recovery=None,
        resume=None,
        manual=None,
        inserted_at=T0 + timedelta(seconds=at),
        updated_at=T0 + timedelta(seconds=at + 1),
        attempts=attempts,
    )


def run_of(*step_runs: StepRun, status: str = "running", current: str | None = None) -> Run:
    return Run(
        id=RUN_ID,
        workflow="wf",
        trigger="go",
        status=status,  # type: ignore[arg-type]
        payload={},
        context={},
        current_step=current,
        last_error=None,
        replayed_from_run_id=None,
        definition_fingerprint="sha256:x",
        definition_version="v1",
        trace_context=None,
        inserted_at=T0,
        updated_at=T0 + timedelta(seconds=60),
        step_runs=step_runs,
        events=(),
    )


def test_iterations_and_map_elements_count_towards_their_declared_step() -> None:
    assert [step_base(k) for k in ("charge", "charge@2", "charge[3]", "a-b[0]@1")] == [
        "charge",
        "charge",
        "charge",
        "a-b",
    ]
    run = run_of(
        step_run("load", "completed", 0, attempt(1, "completed", 0, 1)),
        step_run("charge[0]", "completed", 2),
        step_run("charge[1]", "running", 3),
        step_run("charge[2]", "pending", 4),
        step_run("notify@1", "skipped", 5),
        current="charge",
    )
    states = node_states(run, ["load", "charge", "notify", "archive"])
    assert states["load"] == NodeState("completed", None, False)
    assert states["charge"].status == "running"
    assert states["charge"].detail == "1 completed, 1 pending, 1 running (of 3)"
    assert states["charge"].current
    assert states["notify"].status == "skipped"
    assert states["archive"].status == "waiting"
    done = run_of(step_run("load", "completed", 0), status="completed")
    assert node_states(done, ["load", "archive"])["archive"].status == "not reached"


def test_a_map_step_counts_its_elements_and_shows_its_own_status() -> None:
    run = run_of(
        step_run("price", "completed", 0),
        step_run("price[0]", "completed", 1),
        step_run("price[1]", "completed", 2),
        status="completed",
    )
    state = node_states(run, ["price"])["price"]
    assert (state.status, state.detail) == ("completed", "2 completed (of 2)")
    waiting = run_of(
        step_run("price", "running", 0),
        step_run("price[0]", "completed", 1),
        step_run("price[1]", "pending", 2),
    )
    state = node_states(waiting, ["price"])["price"]
    assert (state.status, state.detail) == ("running", "1 completed, 1 pending (of 2)")


def test_taken_edges_follow_the_steps_reached_and_skip_skipped_ones() -> None:
    shape = definition(
        {"source": "a", "target": "b", "kind": "ok"},
        {"source": "a", "target": "c", "kind": "error"},
        {"source": "b", "target": "__complete__", "kind": "ok"},
        {"source": "c", "target": "__complete__", "kind": "ok"},
    )
    run = run_of(
        step_run("a", "completed", 0),
        step_run("b", "completed", 2),
        step_run("c", "skipped", 2),
        status="completed",
    )
    assert taken_edges(run, shape) == {("__start__", "a"), ("a", "b"), ("b", "__complete__")}


def test_the_timeline_tells_queue_time_from_retry_delays() -> None:
    run = run_of(
        step_run(
            "call",
            "completed",
            0,
            attempt(1, "failed", 2, 3),
            attempt(2, "failed", 33, 34),
            attempt(3, "running", 94, 94),
        )
    )
    rows = attempt_rows(run, now=T0 + timedelta(seconds=100))
    assert [(r.attempt.number, r.waited_for, r.waited) for r in rows] == [
        (1, "queue", timedelta(seconds=2)),
        (2, "retry delay", timedelta(seconds=30)),
        (3, "retry delay", timedelta(seconds=60)),
    ]
    assert rows[2].ended is None
    assert rows[2].took == timedelta(seconds=6)


def test_json_links_run_ids_and_escapes_the_rest() -> None:
    html = str(
        json_html(
            {"child_run_id": RUN_ID, "note": "<b>", "run_id_list": ["x"]},
            lambda run_id: f"/runs/{run_id}",
        )
    )
    assert f'&#34;child_run_id&#34;: &#34;<a href="/runs/{RUN_ID}">{RUN_ID}</a>&#34;' in html
    assert "&lt;b&gt;" in html
    assert trace_id({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}) == "ab" * 16
    assert trace_id({"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"}) is None
    assert trace_id(None) is None
