"""The application the inspector tests look at: samples plus a few workflows of our own."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from samples import (
    daily_digest,
    dependency_recovery,
    manual_approval,
    order_pipeline,
    saga_checkout,
)
from squidmesh_sdk import COMPLETE, NonRetryableError, Retry, StepContext, Workflow, manual

# Paused at a `pause` step until unblocked.
holding = Workflow("holding", triggers=[manual("hold")])
hold = holding.pause("hold", output="hold")
released = holding.log("released", message="released")
holding.chain(hold, released, COMPLETE)


# Fails twice, then succeeds: three attempts on the timeline, two retry delays.
flaky = Workflow("flaky", triggers=[manual("go")])


@flaky.step(retry=Retry(max_attempts=3, backoff=Retry.fixed(30.0)))
def call_partner(ctx: StepContext) -> dict[str, Any]:
    if ctx.attempt < 3:
        raise ConnectionError(f"partner unreachable (attempt {ctx.attempt})")
    return {"partner": "ok"}


flaky.chain(call_partner, COMPLETE)

# One irreversible step: a replay needs the override.
transfer = Workflow("transfer", triggers=[manual("transfer")])


@transfer.step(irreversible=True)
def send_money() -> dict[str, bool]:
    return {"sent": True}


transfer.chain(send_money, COMPLETE)

# Two approvals wait at once (parallel branches): each decision names its step.
two_approvals = Workflow("two_approvals", triggers=[manual("go")])


@two_approvals.step
def prepare() -> dict[str, bool]:
    return {"prepared": True}


legal = two_approvals.approval("legal", after=[prepare], output="legal")
finance = two_approvals.approval("finance", after=[prepare], output="finance")


@two_approvals.step(after=[legal, finance])
def publish(legal: dict[str, Any], finance: dict[str, Any]) -> dict[str, str]:
    return {"published": f"{legal['decision']}+{finance['decision']}"}


# Waits for signal `paid` (a payload with an amount): the Send signal button.
class Paid(BaseModel):
    amount: int


awaiting = Workflow("awaiting", triggers=[manual("go")])
awaiting.chain(awaiting.signal("paid", payload=Paid, output="payment"), COMPLETE)

# Fails while OUTAGE is on: the Retry button.
OUTAGE = {"on": True}
fragile = Workflow("fragile", triggers=[manual("go")])


@fragile.step
def reach_partner() -> dict[str, bool]:
    if OUTAGE["on"]:
        raise NonRetryableError("partner down")
    return {"reached": True}


fragile.chain(reach_partner, COMPLETE)

# A parent whose child step runs `awaiting`: links both ways.
parent = Workflow("parent", triggers=[manual("go")])
parent.chain(parent.child("sub", workflow=awaiting, output="sub"), COMPLETE)

WORKFLOWS = (
    manual_approval.workflow,
    saga_checkout.workflow,
    dependency_recovery.workflow,
    daily_digest.workflow,
    holding,
    flaky,
    transfer,
    two_approvals,
    awaiting,
    fragile,
    parent,
    order_pipeline.workflow,
)


def order_pipeline_payload() -> dict[str, Any]:
    """A large order: it is mapped line by line and waits for the manager's review."""
    return {
        "order_id": "ord-7",
        "lines": [
            {"sku": "desk", "quantity": 2, "unit_cents": 45_000},
            {"sku": "chair", "quantity": 4, "unit_cents": 12_500},
        ],
    }
