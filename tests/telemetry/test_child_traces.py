"""A child run is a trace of its own whose root links to its parent's trace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from squidmesh_sdk import COMPLETE, Workflow, manual
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.telemetry.conftest import Telemetry
from tests.telemetry.support import run_trace


def _workflows() -> tuple[Workflow, Workflow]:
    child = Workflow("child", triggers=[manual("go")])

    @child.step
    def work() -> dict[str, Any]:
        return {"worked": True}

    child.chain(work, COMPLETE)
    parent = Workflow("parent", triggers=[manual("go")])
    parent.chain(parent.child("sub", workflow=child, output="sub"), COMPLETE)
    return parent, child


@pytest.fixture
def env(database_url: str) -> Iterator[WorkflowEnvironment]:
    with WorkflowEnvironment(_workflows(), database=database_url) as environment:
        yield environment


def test_the_childs_trace_links_to_the_parents(
    env: WorkflowEnvironment, telemetry: Telemetry
) -> None:
    run = env.start_run("parent")
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    (child,) = done.children or ()
    spans = telemetry.spans()
    parent_trace = run_trace(spans, run.id)
    child_trace = run_trace(spans, child.child_run_id)
    assert parent_trace.trace_id != child_trace.trace_id
    (root,) = [s for s in child_trace.spans if s.name == "run child" and s.parent_id is None]
    assert root.attributes["squidmesh.parent_run_id"] == run.id
    assert root.attributes["squidmesh.parent_step"] == "sub"
    parent_root = next(s for s in parent_trace.spans if s.name == "run parent")
    assert (parent_trace.trace_id, parent_root.span_id) in root.links
    # The child's end wakes the parent's step in the parent's trace, linked to the child's.
    (woke,) = [s for s in parent_trace.spans if s.name == "child child completed"]
    assert woke.attributes["squidmesh.child_run_id"] == child.child_run_id
    assert woke.links[0][0] == child_trace.trace_id
