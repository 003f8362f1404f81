"""The audit log of a run: pauses, manual decisions and labelled recovery routes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import as_uuid, new_id
from squidmesh_sdk.store.records import AuditEvent, AuditEventType
from squidmesh_sdk.store.schema import run_events

__all__ = ["list_events", "record_event"]


def record_event(
    tx: Transaction,
    run_id: str | uuid.UUID,
    type: AuditEventType,
    *,
    step: str | None = None,
    actor: str | Mapping[str, Any] | None = None,
    comment: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit event to the run, stamped with the transaction's time."""
    values: dict[str, Any] = {
        "id": new_id(),
        "run_id": as_uuid(run_id),
        "type": type,
        "step": step,
        "actor": dict(actor) if isinstance(actor, Mapping) else actor,
        "comment": comment,
        "metadata": dict(metadata) if metadata is not None else None,
        "at": tx.now,
    }
    tx.connection.execute(run_events.insert().values(values))
    return AuditEvent.from_row(values)


def list_events(connection: Connection, run_id: str | uuid.UUID) -> list[AuditEvent]:
    """The run's audit events, oldest first."""
    rows = connection.execute(
        sa.select(run_events)
        .where(run_events.c.run_id == as_uuid(run_id))
        .order_by(run_events.c.at, run_events.c.id)
    ).mappings()
    return [AuditEvent.from_row(row) for row in rows]
