"""Manual approval: a human gate with approve and reject routes and an audit trail."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Workflow, manual


class ManualApprovalPayload(BaseModel):
    account_id: str


workflow = Workflow(
    "manual_approval",
    triggers=[manual("manual_approval", payload=ManualApprovalPayload)],
)

wait_for_approval = workflow.approval("wait_for_approval", output="approval")


@workflow.step(output="approval")
def record_approval(account_id: str, approval: dict[str, Any]) -> dict[str, Any]:
    """Record the approval decision next to the account."""
    return {**approval, "account_id": account_id, "status": "approved"}


@workflow.step(output="approval")
def record_rejection(account_id: str, approval: dict[str, Any]) -> dict[str, Any]:
    """Record the rejection decision next to the account."""
    return {**approval, "account_id": account_id, "status": "rejected"}


workflow.transition(wait_for_approval, on="ok", to=record_approval)
workflow.transition(wait_for_approval, on="error", to=record_rejection)
workflow.chain(record_approval, COMPLETE)
workflow.chain(record_rejection, COMPLETE)
