"""Daily digest: one graph, two triggers (manual and cron) with their own payload contracts."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from squidmesh_sdk import COMPLETE, Workflow, cron, manual, today


class ManualDigestPayload(BaseModel):
    channel: str
    digest_date: date


class ScheduledDigestPayload(BaseModel):
    channel: str = "ops"
    digest_date: date = Field(default_factory=today)


workflow = Workflow(
    "daily_digest",
    triggers=[
        manual("manual_digest", payload=ManualDigestPayload),
        cron("daily_digest", "0 8 * * *", timezone="Etc/UTC", payload=ScheduledDigestPayload),
    ],
)

announce_digest = workflow.log("announce_digest", message="preparing the daily digest")


@workflow.step
def record_digest_delivery(channel: str, digest_date: date) -> dict[str, Any]:
    """Record where and for which day the digest went out."""
    return {"delivery": {"channel": channel, "digest_date": digest_date.isoformat()}}


workflow.chain(announce_digest, record_digest_delivery, COMPLETE)
