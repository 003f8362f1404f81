"""Child runs: a parent starts a run of another workflow, waits for it, and goes on, on both
databases.

What an operator sees: the child's output in the parent's context, the links both ways
(``parent_run_id`` / ``children``), ``explain_run``'s reason, the parent's route when the child
fails, and cancellation going down to the child.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    InvalidArgument,
    NonRetryableError,
    Workflow,
    manual,
)
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import run_reads
from tests.integration.runtime.conftest import MakeEnv


class Order(BaseModel):
    order_id: str
    address: str


class Shipment(BaseModel):
    order: str
    to: str


def shipping() -> Workflow:
    """The child: books a parcel; an address of ``"nowhere"`` fails it."""
    wf = Workflow("shipping", triggers=[manual("ship", payload=Shipment)])

    @wf.step
    def book(order: str, to: str) -> dict[str, Any]:
        if to == "nowhere":
            raise NonRetryableError("no carrier goes there")
        return {"parcel": f"parcel-{order}"}

    hold = wf.signal("picked_up")
    wf.chain(book, hold, COMPLETE)
    return wf


def orders() -> Workflow:
    """The parent: place -> ship (child) -> notify; a failed shipment routes to refund."""
    wf = Workflow("orders", triggers=[manual("order", payload=Order)])

    @wf.step
    def place(order_id: str) -> dict[str, Any]:
        return {"placed": order_id}

    ship = wf.child(
        "ship",
        workflow="shipping",
        payload_from={"order": "order_id", "to": "address"},
        output="shipment",
    )

    @wf.step
    def notify(shipment: dict[str, Any]) -> dict[str, Any]:
        return {"notified": shipment["parcel"]}

    @wf.step
    def refund() -> dict[str, Any]:
        return {"refunded": True}

    wf.chain(place, ship, notify, COMPLETE)
    wf.transition(ship, on="error", to=refund)
    return wf


def test_a_parent_completes_with_its_childs_output(make_env: MakeEnv) -> None:
    env = make_env(orders(), shipping())
    parent = env.start_run("orders", {"order_id": "o-1", "address": "Main St"})
    waiting = env.client.inspect_run(parent.id, include_history=True)
    (child_link,) = waiting.children or ()
    assert (child_link.workflow, child_link.parent_step, child_link.status) == (
        "shipping",
        "ship",
        "running",
    )
    explanation = env.client.explain_run(parent.id)
    assert (explanation.reason, explanation.step) == ("waiting_for_child", "ship")
    assert explanation.details["child_run_id"] == child_link.child_run_id
    child = env.client.inspect_run(child_link.child_run_id)
    assert (child.parent_run_id, child.parent_step) == (parent.id, "ship")
    assert child.payload == {"order": "o-1", "to": "Main St"}
    assert child.idempotency_key == f"child:{parent.id}:ship"

    env.client.signal(child.id, "picked_up")
    done = env.client.inspect_run(parent.id, include_history=True)
    assert done.status == "completed"
    assert done.context["shipment"] == {"parcel": "parcel-o-1"}
    assert done.context["notified"] == "parcel-o-1"
    started = [e for e in done.events or () if e.type == "child_started"]
    assert [(e.step, e.metadata["child_run_id"]) for e in started] == [("ship", child.id)]
    # The child's trace is its own, linked to the parent's (not a span of the parent's trace).
    assert env.client.inspect_run(child.id).trace_context != done.trace_context


def test_a_failed_child_routes_the_parent(make_env: MakeEnv) -> None:
    env = make_env(orders(), shipping())
    parent = env.start_run("orders", {"order_id": "o-2", "address": "nowhere"})
    done = env.client.inspect_run(parent.id, include_history=True)
    assert done.status == "completed"
    assert done.context["refunded"] is True
    ship = done.step_run("ship")
    assert ship is not None
    assert ship.last_error is not None
    assert ship.last_error["code"] == "child_failed"
    assert ship.last_error["cause"]["message"] == "no carrier goes there"
    (child_link,) = done.children or ()
    assert child_link.status == "failed"


def test_a_child_failure_without_error_route_fails_the_parent(make_env: MakeEnv) -> None:
    wf = Workflow("plain_parent", triggers=[manual("go", payload=Order)])
    fields = {"order": "order_id", "to": "address"}
    ship = wf.child("ship", workflow="shipping", payload_from=fields)
    wf.chain(ship, COMPLETE)
    env = make_env(wf, shipping())
    parent = env.start_run("plain_parent", {"order_id": "o-3", "address": "nowhere"})
    failed = env.client.inspect_run(parent.id)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["code"] == "child_failed"
    assert env.client.explain_run(parent.id).reason == "child_failed"


def test_cancelling_the_parent_cancels_its_running_child(make_env: MakeEnv) -> None:
    env = make_env(orders(), shipping())
    parent = env.start_run("orders", {"order_id": "o-4", "address": "Main St"})
    (child_link,) = env.client.inspect_run(parent.id, include_history=True).children or ()
    env.client.cancel_run(parent.id, actor="ops", reason="customer cancelled")
    assert env.client.inspect_run(parent.id).status == "cancelled"
    child = env.client.inspect_run(child_link.child_run_id, include_history=True)
    assert child.status == "cancelled"
    (event,) = [e for e in child.events or () if e.type == "cancelled"]
    assert event.actor == {"parent_run_id": parent.id}
    assert event.comment == "its parent run was cancelled"


def test_a_cancelled_child_fails_the_parents_step(make_env: MakeEnv) -> None:
    env = make_env(orders(), shipping())
    parent = env.start_run("orders", {"order_id": "o-5", "address": "Main St"})
    (child_link,) = env.client.inspect_run(parent.id, include_history=True).children or ()
    env.client.cancel_run(child_link.child_run_id)
    done = env.client.inspect_run(parent.id, include_history=True)
    assert done.status == "completed"  # its error route: refund
    ship = done.step_run("ship")
    assert ship is not None
    assert ship.last_error is not None
    assert ship.last_error["code"] == "child_cancelled"


def test_a_payload_value_missing_from_the_run_state_fails_the_step(make_env: MakeEnv) -> None:
    wf = Workflow("missing", triggers=[manual("go")])
    ship = wf.child("ship", workflow="shipping", payload_from={"order": "nope"})
    wf.chain(ship, COMPLETE)
    env = make_env(wf, shipping())
    run = env.start_run("missing")
    failed = env.client.inspect_run(run.id, include_history=True)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["code"] == "invalid_child_payload"
    assert "'nope'" in failed.last_error["message"]
    assert failed.children == ()


def test_eight_concurrent_redeliveries_of_the_parents_step_start_one_child(
    database_url: str,
) -> None:
    with Client(database_url, [orders(), shipping()], executor=DatabaseExecutor()) as client:
        parent = client.start_run("orders", {"order_id": "o-6", "address": "Main St"})
        with client.runtime.transaction() as tx:
            (job,) = claim_store.claim(tx, worker="t", queues=("default",), limit=1, lease=60)
        client.perform(job.payload)  # place
        with client.database.read() as connection:
            (ship_job,) = [j for j in job_store.list_jobs(connection) if j.step == "ship"]
        barrier = threading.Barrier(8)
        outcomes: list[str] = []
        failures: list[BaseException] = []

        def deliver() -> None:
            barrier.wait()
            try:
                outcomes.append(client.perform(ship_job.payload, redelivered=False))
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert sorted(outcomes) == ["skipped"] * 7 + ["waiting"]
        with client.database.read() as connection:
            children = run_reads.list_children(connection, parent.id)
        assert len(children) == 1
        assert len(client.list_runs(workflow="shipping")) == 1


def test_a_client_given_a_parent_without_its_child_workflow_refuses_to_start(
    database_url: str,
) -> None:
    # Any worker built from such a client could deliver the child step and only fail it, until
    # its job was dead-lettered with no word of why: refused where the fix is one line.
    with pytest.raises(InvalidArgument, match=r"child step 'ship' starts workflow 'shipping'"):
        Client(database_url, [orders()])
    # A version kept for runs already started counts too, even if the current one has no child.
    current = Workflow("orders", triggers=[manual("order", payload=Order)], version="2")
    current.chain(current.log("note", message="no shipping any more"), COMPLETE)
    with pytest.raises(InvalidArgument, match=r"workflow 'orders' \(version '[^']+'\)"):
        Client(database_url, [orders(), current])
    with Client(database_url, [orders(), shipping()]) as client:
        assert set(client.workflows) == {"orders", "shipping"}
