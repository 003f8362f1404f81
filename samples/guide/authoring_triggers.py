"""docs/authoring.md: triggers and payload contracts."""

from datetime import date

from pydantic import BaseModel, Field

from squidmesh_sdk import COMPLETE, Workflow, cron, manual, today


class ManualDigest(BaseModel):
    channel: str
    digest_date: date


class ScheduledDigest(BaseModel):
    channel: str = "ops"
    digest_date: date = Field(default_factory=today)  # evaluated when the run is created


digest = Workflow(
    "daily_digest",
    triggers=[
        manual("manual_digest", payload=ManualDigest),
        cron(
            "daily_digest",
            "0 8 * * *",
            timezone="Europe/Berlin",
            payload=ScheduledDigest,
            idempotency="skip_duplicate",
        ),
    ],
)

digest.chain(digest.log("announce", message="digest ready"), COMPLETE)
