"""Helpers shared by the store tests: fixed times, small workflows, runs and step runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from squidmesh_sdk import COMPLETE, Workflow, compile, manual, today
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import run_creation
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store import step_starts as step_start_store
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.records import Run, StepRun

T = TypeVar("T")

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def write(db: Database, action: Callable[[Transaction], T], now: datetime = T0) -> T:
    """Run ``action`` in a write transaction stamped ``now`` and commit."""
    with db.transaction(now) as tx:
        return action(tx)


def read(db: Database, action: Callable[[Connection], T]) -> T:
    """Run ``action`` in a read transaction."""
    with db.read() as connection:
        return action(connection)


class Order(BaseModel):
    order_id: str
    amount_cents: int
    currency: str = "EUR"
    placed_on: date = Field(default_factory=today)


class Refund(BaseModel):
    order_id: str


def reserve(order_id: str) -> dict[str, Any]:
    return {"reservation": order_id}


def charge(order_id: str) -> dict[str, Any]:
    return {"charge": order_id}


def ship(order_id: str) -> dict[str, Any]:
    return {"shipment": order_id}


def notify(order_id: str) -> dict[str, Any]:
    return {"notified": order_id}


def orders_definition() -> WorkflowDefinition:
    """A transition workflow: reserve -> charge (irreversible) -> ship (not compensatable)
    -> notify -> COMPLETE, with triggers ``checkout`` (the default) and ``refund``."""
    wf = Workflow(
        "orders",
        triggers=[manual("checkout", payload=Order), manual("refund", payload=Refund)],
    )
    steps = (
        wf.step(reserve),
        wf.step(irreversible=True)(charge),
        wf.step(compensatable=False)(ship),
        wf.step(notify),
    )
    wf.chain(*steps, COMPLETE)
    return compile(wf)


def fanout_definition() -> WorkflowDefinition:
    """A dependency workflow: two roots and a join."""
    wf = Workflow("fanout", triggers=[manual("go", payload=Refund)])
    first = wf.step(reserve)
    second = wf.step(charge)
    wf.step(after=[first, second])(notify)
    return compile(wf)


ORDER = {"order_id": "o-1", "amount_cents": 1200}


def new_run(
    db: Database,
    definition: WorkflowDefinition | None = None,
    payload: Mapping[str, Any] | None = None,
    now: datetime = T0,
    **options: Any,
) -> Run:
    """Create and commit a pending run (of ``orders`` with ``ORDER`` by default)."""
    definition = definition or orders_definition()
    return write(
        db, lambda tx: run_creation.create_run(tx, definition, payload or ORDER, **options), now
    )


def move(db: Database, run_id: str, *statuses: str, now: datetime = T0, **fields: Any) -> Run:
    """Transition the run through ``statuses`` in one transaction; ``fields`` go with the last."""

    def action(tx: Transaction) -> Run:
        for status in statuses[:-1]:
            run_store.transition_run(tx, run_id, status)  # type: ignore[arg-type]
        return run_store.transition_run(tx, run_id, statuses[-1], **fields)  # type: ignore[arg-type]

    return write(db, action, now)


def finish_step(
    tx: Transaction,
    run_id: str,
    step: str,
    output: Mapping[str, Any] | None = None,
    *,
    recovery: Mapping[str, Any] | None = None,
    fail: bool = False,
) -> StepRun:
    """Claim ``step``, run one attempt and complete it (or fail it with ``fail``)."""
    step_run, decision = step_start_store.begin_step(tx, run_id, step, {"in": step}, recovery)
    assert decision == "execute"
    attempt = attempt_store.begin_attempt(tx, step_run.id)
    if fail:
        attempt_store.fail_attempt(tx, attempt, {"message": "boom"})
        return step_run_store.fail_step(tx, step_run.id, {"message": "boom"})
    attempt_store.complete_attempt(tx, attempt)
    return step_run_store.complete_step(tx, step_run.id, output or {step: "done"})
