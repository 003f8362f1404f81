"""Guide examples: branching on data, timeouts, a deadline and a review loop.

Copied into docs/authoring.md ("One graph"); tests/docs/test_guide_examples.py runs them.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Workflow, manual, when


class Refund(BaseModel):
    amount_cents: int
    customer_tier: str


refunds = Workflow(
    "refunds",
    triggers=[manual("request", payload=Refund)],
    deadline=timedelta(days=7),
)


@refunds.step
def assess(amount_cents: int) -> dict[str, int]:
    return {"risk": amount_cents // 1000}


review = refunds.approval("review", output="decision", timeout=timedelta(hours=8))
pay_refund = refunds.log("pay_refund", message="refund paid")
escalate = refunds.log("escalate", message="nobody reviewed the refund in time")

refunds.transition(assess, on="ok", to=review, when=when("output.risk").greater_than(50))
refunds.transition(assess, on="ok", to=review, when=when("payload.customer_tier").equals("new"))
refunds.transition(assess, on="ok", to=pay_refund)  # the default: no condition held
refunds.transition(review, on="ok", to=pay_refund)
refunds.transition(review, on="timeout", to=escalate)


class Submission(BaseModel):
    title: str


articles = Workflow("articles", triggers=[manual("submit", payload=Submission)])


@articles.step
def write_draft(title: str, revision: int = 0) -> dict[str, int]:
    return {"revision": revision + 1}


editor_review = articles.approval("editor_review")
publish = articles.log("publish", message="published")

articles.chain(write_draft, editor_review, publish, COMPLETE)
articles.transition(editor_review, on="error", to=write_draft)  # rejected: write it again
