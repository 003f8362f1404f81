"""Payment recovery: check a payment gateway, retrying, with a labelled compensation route.

``load_invoice`` -> ``check_gateway_status`` (HTTP, 5 attempts 1 s apart) -> ``notify_customer``
-> complete. When the gateway check keeps failing the run takes the error route to
``issue_gateway_credit`` (labelled ``compensation``) and still completes. ``notify_customer``
is not compensatable, so replaying a completed run needs an explicit override.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, NonRetryableError, Retry, Workflow, manual


class PaymentRecoveryPayload(BaseModel):
    account_id: str
    invoice_id: str
    attempt_id: str
    gateway_url: str


workflow = Workflow(
    "payment_recovery",
    triggers=[manual("payment_recovery", payload=PaymentRecoveryPayload)],
    description="Recover a failed payment attempt through the gateway",
)


@workflow.step
def load_invoice(account_id: str, invoice_id: str) -> dict[str, Any]:
    """Load the invoice the failed attempt belongs to."""
    return {"invoice": {"id": invoice_id, "account_id": account_id, "status": "open"}}


@workflow.step(retry=Retry(max_attempts=5, backoff=Retry.fixed(1.0)), output="gateway_check")
def check_gateway_status(gateway_url: str, attempt_id: str) -> dict[str, Any]:
    """Ask the gateway what happened to the attempt (retried while the gateway is down)."""
    if not gateway_url.startswith(("http://", "https://")):
        raise NonRetryableError(f"gateway_url must be http(s), got {gateway_url!r}")
    url = f"{gateway_url}?attempt_id={attempt_id}"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - scheme checked above
        body = json.loads(response.read().decode() or "{}")
    return {"status": body.get("status", "unknown"), "attempt_id": attempt_id}


@workflow.step(compensatable=False)
def notify_customer(account_id: str, gateway_check: dict[str, Any]) -> dict[str, Any]:
    """Tell the customer the outcome (an email cannot be unsent)."""
    return {
        "notification": {
            "channel": "email",
            "account_id": account_id,
            "gateway_status": gateway_check["status"],
        }
    }


@workflow.step(output="compensation")
def issue_gateway_credit(account_id: str, invoice_id: str) -> dict[str, Any]:
    """Credit the account when the gateway cannot be reached."""
    return {"status": "credit_issued", "account_id": account_id, "invoice_id": invoice_id}


workflow.chain(load_invoice, check_gateway_status, notify_customer, COMPLETE)
workflow.transition(
    check_gateway_status, on="error", to=issue_gateway_credit, recovery="compensation"
)
workflow.chain(issue_gateway_credit, COMPLETE)
