"""Dependency recovery: two roots fan out, a join fans in once both completed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import Workflow, manual


class DependencyRecoveryPayload(BaseModel):
    account_id: str
    invoice_id: str


workflow = Workflow(
    "dependency_recovery",
    triggers=[manual("dependency_recovery", payload=DependencyRecoveryPayload)],
)


@workflow.step
def load_account(account_id: str) -> dict[str, Any]:
    """Load the account (a root: runs at once)."""
    return {"account": {"id": account_id, "tier": "gold"}}


@workflow.step
def load_invoice(invoice_id: str) -> dict[str, Any]:
    """Load the invoice (a root: runs beside ``load_account``)."""
    return {"invoice": {"id": invoice_id, "amount_cents": 4200}}


@workflow.step(after=[load_account, load_invoice])
def prepare_notification(account: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
    """Join: combine both roots' outputs."""
    return {"notification": {"tier": account["tier"], "invoice_id": invoice["id"]}}
