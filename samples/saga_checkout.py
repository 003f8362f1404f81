"""Saga checkout: when payment capture fails for good, completed steps are compensated
in reverse order (void the authorization, then release the inventory)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Retry, StepContext, Workflow, manual


class CheckoutPayload(BaseModel):
    order_id: str
    amount_cents: int


class PaymentDeclinedError(Exception):
    """The payment provider declined the capture."""


workflow = Workflow("saga_checkout", triggers=[manual("checkout", payload=CheckoutPayload)])


@workflow.step
def reserve_inventory(order_id: str) -> dict[str, Any]:
    """Hold stock for the order."""
    return {"reservation": {"id": f"res_{order_id}", "order_id": order_id}}


@reserve_inventory.compensate
def release_inventory(reservation: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Give the held stock back."""
    return {"released": reservation["id"], "after": (ctx.failure or {}).get("message")}


@workflow.step
def authorize_payment(order_id: str, amount_cents: int) -> dict[str, Any]:
    """Authorize (not capture) the amount."""
    return {"authorization": {"id": f"auth_{order_id}", "amount_cents": amount_cents}}


@authorize_payment.compensate
def void_payment_authorization(authorization: dict[str, Any]) -> dict[str, Any]:
    """Void the authorization."""
    return {"voided": authorization["id"]}


@workflow.step(retry=Retry(max_attempts=2))
def capture_payment(authorization: dict[str, Any]) -> dict[str, Any]:
    """Capture the payment; this sample's provider always declines."""
    raise PaymentDeclinedError(f"capture declined for {authorization['id']}")


workflow.chain(reserve_inventory, authorize_payment, capture_payment, COMPLETE)
