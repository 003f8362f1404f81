"""A transition workflow runs end to end, durably, with every step, attempt and output recorded."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    DispatchFailed,
    InvalidPayload,
    InvalidTrigger,
    InvalidWorkflow,
    StepContext,
    Workflow,
    manual,
)
from squidmesh_sdk.store import schema
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv


class Order(BaseModel):
    order_id: str
    amount_cents: int
    currency: str = "EUR"


class Refund(BaseModel):
    order_id: str


def order_workflow() -> Workflow:
    wf = Workflow(
        "orders", triggers=[manual("place", payload=Order), manual("refund", payload=Refund)]
    )

    @wf.step
    def reserve(order_id: str) -> dict[str, Any]:
        return {"reservation": f"r-{order_id}"}

    @wf.step(output="payment")
    def charge(amount_cents: int, currency: str, reservation: str, ctx: StepContext) -> Order:
        assert ctx.step == "charge"
        assert ctx.attempt == 1
        return Order(order_id=reservation, amount_cents=amount_cents * 2, currency=currency)

    @wf.step
    async def notify(payment: dict[str, Any]) -> dict[str, Any]:
        return {"notified": payment["order_id"]}

    wf.chain(reserve, charge, notify, COMPLETE)
    return wf


def _row_counts(env: WorkflowEnvironment) -> dict[str, int]:
    with env.client.database.read() as connection:
        return {
            table.name: connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            for table in schema.metadata.sorted_tables
            if table is not schema.migrations
        }


def test_a_transition_workflow_runs_to_completion(make_env: MakeEnv) -> None:
    env = make_env(order_workflow())
    run = env.start_run("orders", {"order_id": "o-1", "amount_cents": 500})
    assert run.status == "pending"
    assert run.current_step == "reserve"
    assert run.payload == {"order_id": "o-1", "amount_cents": 500, "currency": "EUR"}

    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.current_step is None
    assert done.last_error is None
    assert done.context == {
        "reservation": "r-o-1",
        "payment": {"order_id": "r-o-1", "amount_cents": 1000, "currency": "EUR"},
        "notified": "r-o-1",
    }
    assert done.step_runs is not None
    assert [(sr.step, sr.status) for sr in done.step_runs] == [
        ("reserve", "completed"),
        ("charge", "completed"),
        ("notify", "completed"),
    ]
    charge = done.step_run("charge")
    assert charge is not None
    assert charge.input == {"amount_cents": 500, "currency": "EUR", "reservation": "r-o-1"}
    assert charge.output == {
        "payment": {"order_id": "r-o-1", "amount_cents": 1000, "currency": "EUR"}
    }
    assert charge.recovery == {
        "irreversible": False,
        "compensatable": True,
        "replay": "allowed",
        "recovery": "automatic",
    }
    assert all(
        [(a.number, a.status) for a in sr.attempts or ()] == [(1, "completed")]
        for sr in done.step_runs
    )
    transitions = [(e.from_status, e.to_status) for e in env.events.of_type(_transitioned())]
    assert transitions == [("pending", "running"), ("running", "completed")]


def _transitioned() -> type:
    from squidmesh_sdk.runtime.events import RunTransitioned

    return RunTransitioned


def test_runs_can_be_inspected_between_steps(make_env: MakeEnv) -> None:
    env = make_env(order_workflow(), run_immediately=False)
    run = env.start_run("orders", {"order_id": "o-2", "amount_cents": 1})
    payload = {k: v for k, v in env.executor.pending[0][1].items() if k != "trace"}
    assert payload == {"kind": "step", "run_id": run.id, "step": "reserve"}
    assert env.run_due() == 3
    assert env.client.inspect_run(run.id).status == "completed"


def test_a_named_trigger_validates_against_its_own_contract(make_env: MakeEnv) -> None:
    env = make_env(order_workflow(), run_immediately=False)
    run = env.start_run("orders", {"order_id": "o-3"}, trigger="refund")
    assert (run.trigger, run.payload) == ("refund", {"order_id": "o-3"})
    with pytest.raises(InvalidTrigger, match="'cancel'"):
        env.start_run("orders", {}, trigger="cancel")


def test_payload_errors_list_every_problem_and_persist_nothing(make_env: MakeEnv) -> None:
    env = make_env(order_workflow())
    with pytest.raises(InvalidPayload) as raised:
        env.start_run("orders", {"amount_cents": "lots", "coupon": "X"})
    assert raised.value.missing_fields == ("order_id",)
    assert raised.value.unknown_fields == ("coupon",)
    assert list(raised.value.invalid_fields) == ["amount_cents"]
    with pytest.raises(InvalidPayload, match="expected a mapping"):
        env.client.start_run("orders", ["not", "a", "mapping"])  # type: ignore[arg-type]
    assert env.client.list_runs() == []
    assert set(_row_counts(env).values()) == {0}
    assert env.executor.dispatched == []


def test_an_unregistered_workflow_is_refused(make_env: MakeEnv) -> None:
    env = make_env(order_workflow())
    with pytest.raises(InvalidWorkflow, match="registered: orders"):
        env.start_run("payments", {})


def test_executor_failure_on_start_persists_nothing(make_env: MakeEnv) -> None:
    env = make_env(order_workflow())
    env.executor.fail_next()
    with pytest.raises(DispatchFailed, match="executor unavailable") as raised:
        env.start_run("orders", {"order_id": "o-4", "amount_cents": 1})
    assert isinstance(raised.value.__cause__, ConnectionError)
    assert set(_row_counts(env).values()) == {0}
    assert env.executor.pending == []
    # The next start works: nothing was left half-written.
    assert env.start_run("orders", {"order_id": "o-4", "amount_cents": 1}).status == "pending"
    assert env.client.list_runs()[0].status == "completed"


def test_a_failing_successor_dispatch_fails_the_run_and_keeps_the_step_result(
    make_env: MakeEnv,
) -> None:
    env = make_env(order_workflow(), run_immediately=False)
    run = env.start_run("orders", {"order_id": "o-5", "amount_cents": 7})
    env.executor.fail_next()
    env.run_due()
    failed = env.client.inspect_run(run.id, include_history=True)
    assert failed.status == "failed"
    assert failed.current_step == "charge"
    assert failed.last_error == {
        "kind": "dispatch_failed",
        "message": "failed to dispatch workflow step",
        "code": "dispatch_failed",
        "type": "squidmesh_sdk.errors.DispatchFailed",
        "retryable": False,
        "step": "charge",
        "details": {"next_steps": ["charge"], "reason": "ConnectionError: executor unavailable"},
        "cause": None,
    }
    assert failed.context == {"reservation": "r-o-5"}
    assert [(sr.step, sr.status) for sr in failed.step_runs or ()] == [("reserve", "completed")]
    assert env.executor.pending == []


def test_list_runs_filters_by_workflow_and_status(make_env: MakeEnv) -> None:
    other = Workflow("other", triggers=[manual("go")])
    other.chain(other.log("say", message="hello"), COMPLETE)
    env = make_env(order_workflow(), other, run_immediately=False)
    first = env.start_run("orders", {"order_id": "a", "amount_cents": 1})
    env.clock.advance(1)
    second = env.start_run("other")
    assert [r.id for r in env.client.list_runs()] == [second.id, first.id]
    assert [r.id for r in env.client.list_runs(workflow="orders")] == [first.id]
    env.run_due()
    assert [r.id for r in env.client.list_runs(status="completed", limit=1)] == [second.id]
