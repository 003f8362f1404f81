"""Local ledger checkout: a step whose database writes commit or roll back with the step."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, NonRetryableError, StepContext, Workflow, manual

metadata = sa.MetaData()
ledger_entries = sa.Table(
    "local_ledger_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("entry", sa.String(32), nullable=False),
)


class LedgerCheckoutPayload(BaseModel):
    account_id: str
    fail_after_reserve: bool = False


workflow = Workflow(
    "local_ledger_checkout",
    triggers=[manual("local_ledger_checkout", payload=LedgerCheckoutPayload)],
)


@workflow.step(transaction=True, output="local_ledger")
def post_local_ledger_entries(
    account_id: str, fail_after_reserve: bool, ctx: StepContext
) -> dict[str, Any]:
    """Write "reserve" then "capture" entries in one host-database transaction."""
    if ctx.connection is None:
        raise NonRetryableError("post_local_ledger_entries must run with transaction=True")
    entry = {"run_id": ctx.run_id, "account_id": account_id}
    ctx.connection.execute(ledger_entries.insert(), {**entry, "entry": "reserve"})
    if fail_after_reserve:
        raise NonRetryableError("local ledger capture failed")
    ctx.connection.execute(ledger_entries.insert(), {**entry, "entry": "capture"})
    return {"status": "committed", "entries": 2}


workflow.chain(post_local_ledger_entries, COMPLETE)
