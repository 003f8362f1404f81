"""Order pipeline: one graph with a map over order lines, parallel steps, a branch on data to an
approval with a timeout, a saga compensation and a deadline.

``price_line`` runs once per order line (four at a time); ``validate`` then totals the order and
returns ``Branch("large", ...)`` for big orders, which routes them to a manager's approval.
``reserve_stock`` and ``charge_card`` run in parallel meanwhile; ``ship`` waits for both and for
the approval, which a small order skips. A rejected or timed-out approval cancels the order
(refunding the charge), and ``ship`` is then skipped. A run has two days to finish.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from typing_extensions import TypedDict  # pydantic needs it for TypedDict inputs on 3.11

from squidmesh_sdk import Branch, Retry, Workflow, manual

LARGE_ORDER_CENTS = 100_000


class OrderLine(BaseModel):
    sku: str
    quantity: int
    unit_cents: int


class OrderPayload(BaseModel):
    order_id: str
    lines: list[OrderLine]


class PricedLine(TypedDict):
    sku: str
    cents: int


class Validated(TypedDict):
    total_cents: int


workflow = Workflow(
    "order_pipeline",
    triggers=[manual("place_order", payload=OrderPayload)],
    deadline=timedelta(days=2),
)


@workflow.step(
    map_over="lines",
    map_as="line",
    max_parallel=4,
    retry=Retry(max_attempts=3, backoff=Retry.exponential(min=1, max=10)),
)
def price_line(line: OrderLine) -> PricedLine:
    """Price one order line (runs once per line, each with its own retries)."""
    return {"sku": line.sku, "cents": line.quantity * line.unit_cents}


@workflow.step(after=[price_line])
def validate(price_line: list[PricedLine]) -> Branch | Validated:
    """Total the order; large orders take the ``large`` route to a manager's review."""
    checked: Validated = {"total_cents": sum(line["cents"] for line in price_line)}
    return Branch("large", checked) if checked["total_cents"] >= LARGE_ORDER_CENTS else checked


@workflow.step(after=[validate])
def reserve_stock(order_id: str, price_line: list[PricedLine]) -> dict[str, list[str]]:
    """Reserve every line's stock (in parallel with the charge)."""
    return {"reserved": [line["sku"] for line in price_line]}


@workflow.step(after=[validate])
def charge_card(order_id: str, total_cents: int) -> dict[str, str]:
    """Charge the customer (in parallel with the reservation)."""
    return {"charge_id": f"ch_{order_id}_{total_cents}"}


@charge_card.compensate
def refund_card(charge_id: str) -> dict[str, str]:
    """Saga rollback: refund the charge if the run fails after it."""
    return {"refunded": charge_id}


manager_review = workflow.approval("manager_review", output="review", timeout=timedelta(hours=4))
workflow.transition(validate, on="large", to=manager_review)


@workflow.step(after=[reserve_stock, charge_card, manager_review])
def ship(order_id: str, reserved: list[str]) -> dict[str, str]:
    """Ship once stock and payment are in and, for a large order, the manager approved."""
    return {"shipment": f"shp_{order_id}_{len(reserved)}"}


@workflow.step
def cancel_order(order_id: str, charge_id: str | None = None) -> dict[str, str | None]:
    """A rejected or unanswered review cancels the order and refunds its charge."""
    return {"cancelled": order_id, "refunded": charge_id}


workflow.transition(manager_review, on="error", to=cancel_order)
workflow.transition(manager_review, on="timeout", to=cancel_order)
