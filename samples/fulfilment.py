"""Signals, child workflows and retry from the failed step: an order waits for its payment
webhook, ships through a reusable shipping workflow, and a failed run is resumed.

Run it with ``python -m samples.fulfilment``; ``tests/integration/samples`` runs ``main()``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Client, NonRetryableError, Workflow, manual
from squidmesh_sdk.store.records import Run


class Order(BaseModel):
    order_id: str
    address: str


class Payment(BaseModel):
    amount_cents: int
    reference: str


class Shipment(BaseModel):
    order_id: str
    address: str


CARRIER = {"up": True}
"""Whether the carrier accepts bookings: ``main()`` takes it down to show ``retry_run``."""

# The child: a reusable shipping workflow, started by orders (and by anything else).
shipping = Workflow("shipping", triggers=[manual("ship", payload=Shipment)])


@shipping.step
def book_carrier(order_id: str, address: str) -> dict[str, Any]:
    if not CARRIER["up"]:
        raise NonRetryableError("the carrier is not taking bookings", code="carrier_down")
    return {"tracking": f"trk-{order_id}", "to": address}


shipping.chain(book_carrier, COMPLETE)

# The parent: waits for the payment webhook, then ships through the child workflow.
orders = Workflow("fulfilment", triggers=[manual("order", payload=Order)])


@orders.step
def reserve_stock(order_id: str) -> dict[str, Any]:
    return {"reserved": order_id}


payment = orders.signal("payment_received", payload=Payment, output="payment", timeout=86400)
ship = orders.child(
    "ship",
    workflow=shipping,
    payload_from={"order_id": "order_id", "address": "address"},
    output="shipment",
)


@orders.step
def confirm(payment: dict[str, Any], shipment: dict[str, Any]) -> dict[str, Any]:
    return {"confirmation": f"{payment['reference']} / {shipment['tracking']}"}


orders.log("payment_overdue", message="no payment within a day")
orders.chain(reserve_stock, payment, ship, confirm, COMPLETE)
orders.transition(payment, on="timeout", to="payment_overdue")


def deliver_webhook(client: Client, run_id: str, body: dict[str, Any], delivery_id: str) -> None:
    """A payment webhook handler: the provider's delivery id makes a retried webhook one signal."""
    client.signal(run_id, "payment_received", body, idempotency_key=delivery_id)


def main(database: str | None = None) -> Run:
    """Pay, fail to ship (carrier down), retry from the failed step, and print the result."""
    folder = tempfile.mkdtemp()
    url = database or f"sqlite:///{Path(folder) / 'fulfilment.db'}"
    with Client(url, [orders, shipping]) as client:
        client.migrate()
        run = client.start_run(orders, {"order_id": "o-1", "address": "1 Main St"})
        print(client.explain_run(run.id).reason)  # waiting_for_signal
        CARRIER["up"] = False
        body = {"amount_cents": 4200, "reference": "pay-77"}
        deliver_webhook(client, run.id, body, delivery_id="evt-1")
        deliver_webhook(client, run.id, body, delivery_id="evt-1")  # a retried webhook
        print(client.inspect_run(run.id).status)  # failed: the child failed
        CARRIER["up"] = True
        client.retry_run(run.id, actor="ops", reason="carrier is back")
        done = client.wait_for_run(run.id, timeout=10, include_history=True)
        print(done.status, done.context["confirmation"])
        return done


if __name__ == "__main__":
    main()
