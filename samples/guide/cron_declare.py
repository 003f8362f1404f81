"""docs/cron.md: a cron trigger with schedule identity."""

from datetime import date

from pydantic import BaseModel, Field

from squidmesh_sdk import COMPLETE, Workflow, cron, manual, today


class Digest(BaseModel):
    channel: str = "ops"
    digest_date: date = Field(default_factory=today)


digest = Workflow(
    "daily_digest",
    triggers=[
        cron(
            "daily",
            "0 8 * * *",
            timezone="Europe/Berlin",
            payload=Digest,
            idempotency="return_existing_run",
        ),
        manual("by_hand", payload=Digest),
    ],
)
digest.chain(digest.log("announce", message="digest ready"), COMPLETE)
