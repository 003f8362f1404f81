"""What a run's end closes, on both databases: the step runs it will never start, and the
children it started that are still running (the parent-close policy).

The rule under test: a finished run has no ``pending`` step run, and no child left running
unless its step said ``on_parent_close="abandon"``; each closing is in the audit trail and in
``explain_run``; and a failed run's ``retry_run`` goes on with what the failure closed.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, NonRetryableError, Workflow, manual
from squidmesh_sdk.definition.steps import ParentClosePolicy
from tests.integration.runtime.conftest import MakeEnv
from tests.integration.runtime.test_children import Order, shipping


class Lines(BaseModel):
    lines: list[int]


def _statuses(env: Any, run_id: str) -> dict[str, str]:
    run = env.client.inspect_run(run_id, include_history=True)
    return {sr.step: sr.status for sr in run.step_runs or ()}


def test_a_map_whose_element_fails_skips_the_elements_never_dispatched_and_retry_reopens_them(
    make_env: MakeEnv,
) -> None:
    broken = {1}
    wf = Workflow("map_fail", triggers=[manual("go", payload=Lines)])

    @wf.step(map_over="lines", map_as="line", max_parallel=1)
    def each(line: int) -> dict[str, Any]:
        if line in broken:
            raise NonRetryableError(f"line {line} is broken")
        return {"line": line}

    env = make_env(wf)
    run = env.start_run("map_fail", {"lines": [0, 1, 2, 3]})
    failed = env.client.inspect_run(run.id, include_history=True)
    assert failed.status == "failed"
    assert _statuses(env, run.id) == {
        "each": "failed",
        "each[0]": "completed",
        "each[1]": "failed",
        "each[2]": "skipped",
        "each[3]": "skipped",
    }
    closed = failed.step_run("each[2]")
    assert closed is not None
    assert closed.last_error is not None
    assert closed.last_error["code"] == "run_failed"
    (event,) = [e for e in failed.events or () if e.type == "steps_closed"]
    assert event.metadata == {
        "steps": ["each[2]", "each[3]"],
        "status": "skipped",
        "run_status": "failed",
    }
    explanation = env.client.explain_run(run.id)
    assert explanation.details["closed_steps"] == ["each[2]", "each[3]"]
    assert "retry_run" in explanation.next_actions

    # The operator fixes the data and retries: the closed elements run after all.
    broken.clear()
    env.client.retry_run(run.id, actor="ops", reason="line 1 fixed")
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed", done.last_error
    assert [row["line"] for row in done.context["each"]] == [0, 1, 2, 3]
    (retried,) = [e for e in done.events or () if e.type == "retried"]
    assert retried.metadata is not None
    assert retried.metadata["reopened_steps"] == ["each[2]", "each[3]"]
    assert "closed_steps" not in env.client.explain_run(run.id).details


def _fan_out(name: str, *, fail: bool) -> Workflow:
    """``start``, then ``left`` and ``right`` in parallel, then ``join``."""
    wf = Workflow(name, triggers=[manual("go")])

    @wf.step
    def start() -> dict[str, Any]:
        return {"started": True}

    @wf.step(after=[start])
    def left() -> dict[str, Any]:
        if fail:
            raise NonRetryableError("left is broken")
        return {"left": True}

    @wf.step(after=[start])
    def right() -> dict[str, Any]:
        return {"right": True}

    @wf.step(after=[left, right])
    def join() -> dict[str, Any]:
        return {"joined": True}

    return wf


def test_cancelling_a_run_cancels_its_queued_branches(make_env: MakeEnv) -> None:
    env = make_env(_fan_out("fan_cancel", fail=False), run_immediately=False)
    run = env.start_run("fan_cancel")
    assert env.executor.run_next()  # start: left and right are now scheduled
    assert _statuses(env, run.id) == {"start": "completed", "left": "pending", "right": "pending"}
    cancelled = env.client.cancel_run(run.id, actor="ops", reason="not needed")
    assert cancelled.status == "cancelled"
    env.run_until_idle()  # their jobs find the run cancelled
    assert _statuses(env, run.id) == {
        "start": "completed",
        "left": "cancelled",
        "right": "cancelled",
    }
    done = env.client.inspect_run(run.id, include_history=True)
    (event,) = [e for e in done.events or () if e.type == "steps_closed"]
    assert event.metadata is not None
    assert event.metadata["steps"] == ["left", "right"]
    states = {state.step: state.status for state in done.steps or ()}
    assert states == {
        "start": "completed",
        "left": "cancelled",
        "right": "cancelled",
        "join": "waiting",
    }
    assert env.client.explain_run(run.id).details["closed_steps"] == ["left", "right"]


def test_a_branch_failing_skips_the_queued_one_and_retry_runs_it(make_env: MakeEnv) -> None:
    env = make_env(_fan_out("fan_fail", fail=True), run_immediately=False)
    run = env.start_run("fan_fail")
    assert env.executor.run_next()  # start
    left = next(job for _, job in env.executor.pending if job["step"] == "left")
    env.client.perform(left)
    assert env.client.inspect_run(run.id).status == "failed"
    assert _statuses(env, run.id)["right"] == "skipped"
    env.run_until_idle()  # right's job finds the run failed and does nothing
    assert _statuses(env, run.id)["right"] == "skipped"


def _parent(policy: ParentClosePolicy) -> Workflow:
    """``ship`` starts a shipping child (it waits for a signal) while ``hold`` waits a minute,
    then ``charge`` fails the run."""
    wf = Workflow(f"parent_{policy}", triggers=[manual("order", payload=Order)])

    @wf.step
    def place(order_id: str) -> dict[str, Any]:
        return {"placed": order_id}

    ship = wf.child(
        "ship",
        workflow="shipping",
        payload_from={"order": "order_id", "to": "address"},
        output="shipment",
        after=[place],
        on_parent_close=policy,
    )
    hold = wf.wait("hold", duration=60, after=[place])

    @wf.step(after=[hold])
    def charge() -> dict[str, Any]:
        raise NonRetryableError("card declined")

    wf.transition(ship, on="ok", to=COMPLETE)
    return wf


def test_a_parent_that_fails_cancels_its_running_child(make_env: MakeEnv) -> None:
    env = make_env(_parent("cancel"), shipping())
    parent = env.start_run("parent_cancel", {"order_id": "o-1", "address": "Main St"})
    (link,) = env.client.inspect_run(parent.id, include_history=True).children or ()
    assert link.status == "running"  # waiting for its signal
    env.advance(60)  # hold ends; charge fails the parent
    failed = env.client.inspect_run(parent.id, include_history=True)
    assert failed.status == "failed"
    child = env.client.inspect_run(link.child_run_id, include_history=True)
    assert child.status == "cancelled"
    (cancel,) = [e for e in child.events or () if e.type == "cancelled"]
    assert (cancel.actor, cancel.comment) == ({"parent_run_id": parent.id}, "its parent run failed")
    (closed,) = [e for e in failed.events or () if e.type == "child_cancelled"]
    assert closed.step == "ship"
    assert closed.metadata == {
        "child_run_id": link.child_run_id,
        "workflow": "shipping",
        "parent_status": "failed",
        "child_status": "cancelled",
    }
    explained = env.client.explain_run(parent.id)
    assert explained.details["closed_children"] == [
        {
            "child_run_id": link.child_run_id,
            "workflow": "shipping",
            "step": "ship",
            "closed": "cancelled",
        }
    ]
    assert env.client.explain_run(link.child_run_id).details["cancelled_by_parent"] == parent.id

    # Retrying the parent is not stranded on the cancelled child: the child step ends at once
    # (child_cancelled, no error route: the run fails again, saying why).
    env.client.retry_run(parent.id, from_step="charge")
    env.run_until_idle()
    again = env.client.inspect_run(parent.id, include_history=True)
    assert again.status == "failed"
    assert again.last_error is not None
    assert again.last_error["code"] in ("child_cancelled", "child_failed")
    ship = again.step_run("ship")
    assert ship is not None
    assert ship.status == "failed"


def test_a_parent_that_fails_leaves_an_abandoned_child_running(make_env: MakeEnv) -> None:
    env = make_env(_parent("abandon"), shipping())
    parent = env.start_run("parent_abandon", {"order_id": "o-2", "address": "Main St"})
    (link,) = env.client.inspect_run(parent.id, include_history=True).children or ()
    env.advance(60)
    failed = env.client.inspect_run(parent.id, include_history=True)
    assert failed.status == "failed"
    assert env.client.inspect_run(link.child_run_id).status == "running"
    (left,) = [e for e in failed.events or () if e.type == "child_abandoned"]
    assert left.metadata is not None
    assert (left.step, left.metadata["child_status"]) == ("ship", "running")
    assert env.client.explain_run(parent.id).details["closed_children"][0]["closed"] == "abandoned"
    # Retried and failed again: abandoned again (two events), explained once.
    env.client.retry_run(parent.id, from_step="charge")
    env.run_until_idle()
    again = env.client.inspect_run(parent.id, include_history=True)
    assert again.status == "failed"
    assert [e.type for e in again.events or ()].count("child_abandoned") == 2
    assert len(env.client.explain_run(parent.id).details["closed_children"]) == 1
    # The child goes on on its own; its end wakes no one.
    env.client.signal(link.child_run_id, "picked_up")
    assert env.client.inspect_run(link.child_run_id).status == "completed"
    assert env.client.inspect_run(parent.id).status == "failed"


@pytest.mark.parametrize("policy", ["cancel", "abandon"])
def test_cancelling_a_parent_follows_the_childs_policy(
    make_env: MakeEnv, policy: ParentClosePolicy
) -> None:
    env = make_env(_parent(policy), shipping())
    parent = env.start_run(f"parent_{policy}", {"order_id": "o-3", "address": "Main St"})
    (link,) = env.client.inspect_run(parent.id, include_history=True).children or ()
    env.client.cancel_run(parent.id, actor="ops", reason="customer left")
    done = env.client.inspect_run(parent.id, include_history=True)
    assert done.status == "cancelled"
    child = env.client.inspect_run(link.child_run_id)
    expected = {
        "cancel": ("cancelled", "child_cancelled"),
        "abandon": ("running", "child_abandoned"),
    }
    assert (
        child.status,
        *[
            e.type
            for e in done.events or ()
            if e.type.startswith("child_") and e.type != "child_started"
        ],
    ) == expected[policy]


def test_a_failing_parent_cancels_its_children_down_the_tree(make_env: MakeEnv) -> None:
    relay = Workflow("relay", triggers=[manual("go", payload=Order)])
    forward = relay.child(
        "forward", workflow="shipping", payload_from={"order": "order_id", "to": "address"}
    )
    relay.chain(forward, COMPLETE)
    top = Workflow("top", triggers=[manual("go", payload=Order)], deadline=60)
    down = top.child(
        "down", workflow="relay", payload_from={"order_id": "order_id", "address": "address"}
    )
    top.chain(down, COMPLETE)
    env = make_env(top, relay, shipping())
    parent = env.start_run("top", {"order_id": "o-4", "address": "Main St"})
    (middle,) = env.client.inspect_run(parent.id, include_history=True).children or ()
    (bottom,) = env.client.inspect_run(middle.child_run_id, include_history=True).children or ()
    env.advance(60)  # the top run's deadline fails it
    failed = env.client.inspect_run(parent.id)
    assert failed.last_error is not None
    assert failed.last_error["code"] == "deadline_exceeded"
    explained = env.client.explain_run(parent.id)
    assert explained.reason == "deadline_exceeded"
    assert "retry_run" not in explained.next_actions  # it would fail again at once
    for link, actor, reason in (
        (middle, parent.id, "its parent run failed"),
        (bottom, middle.child_run_id, "its parent run was cancelled"),
    ):
        child = env.client.inspect_run(link.child_run_id, include_history=True)
        assert child.status == "cancelled"
        (event,) = [e for e in child.events or () if e.type == "cancelled"]
        assert (event.actor, event.comment) == ({"parent_run_id": actor}, reason)
