"""How far each cron trigger's scheduling has got (``squidmesh_cron_schedules``)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.store.database import Transaction, upsert
from squidmesh_sdk.store.schema import cron_schedules

__all__ = ["advance", "last_start", "start_tracking"]

_table = cron_schedules


def last_start(connection: Connection, workflow: str, trigger: str) -> datetime | None:
    """The firing time of the last window handled for this trigger, if it is tracked."""
    value = connection.scalar(
        sa.select(_table.c.last_start).where(
            _table.c.workflow == workflow, _table.c.trigger == trigger
        )
    )
    return value if isinstance(value, datetime) else None


def start_tracking(tx: Transaction, workflow: str, trigger: str, since: datetime) -> None:
    """Track a trigger seen for the first time from ``since``; no-op if it is tracked already."""
    statement = (
        upsert(tx.connection.dialect.name, _table)
        .values(workflow=workflow, trigger=trigger, last_start=since, updated_at=tx.now)
        .on_conflict_do_nothing(index_elements=[_table.c.workflow, _table.c.trigger])
    )
    tx.connection.execute(statement)


def advance(
    tx: Transaction, workflow: str, trigger: str, *, expected: datetime, new: datetime
) -> bool:
    """Move ``last_start`` from ``expected`` to ``new``; ``False`` if another worker moved it."""
    result = tx.connection.execute(
        _table.update()
        .where(
            _table.c.workflow == workflow,
            _table.c.trigger == trigger,
            _table.c.last_start == expected,
        )
        .values(last_start=new, updated_at=tx.now)
    )
    return result.rowcount == 1
