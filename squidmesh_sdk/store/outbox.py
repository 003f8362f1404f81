"""The transactional outbox: messages for a broker that cannot join our transaction.

A message is inserted with the state change that implies it (``add``), so a committed change
always has its message and a rolled-back one never does. A relay then *takes* due messages
(``take``: their ``publish_at`` moves forward by a lease, in a short transaction of its own, so
no lock is held while it talks to the broker), publishes them, and pushes their ``publish_at``
further (``postpone``): a published message stays until the delivery it caused is done and
``remove``s it, in the transaction that records its outcome. A relay that dies, or a broker
that loses the message, leaves it in the table, to be published again when its time comes. A
message may therefore reach the broker more than once, never zero times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import as_uuid
from squidmesh_sdk.store.schema import outbox

__all__ = ["Message", "NewMessage", "add", "count", "postpone", "remove", "take"]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to insert."""

    destination: str
    payload: Mapping[str, Any]
    run_id: str | None = None
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A message taken for publication."""

    id: int
    destination: str
    payload: Mapping[str, Any]
    attempts: int


def add(tx: Transaction, messages: Sequence[NewMessage]) -> list[int]:
    """Insert ``messages`` in the caller's transaction; return their ids, in order."""
    rows = [
        {
            "destination": message.destination,
            "payload": dict(message.payload),
            "run_id": as_uuid(message.run_id) if message.run_id is not None else None,
            "publish_at": tx.now + timedelta(seconds=message.delay) if message.delay else tx.now,
            "attempts": 0,
            "last_error": None,
            "inserted_at": tx.now,
        }
        for message in messages
    ]
    statement = outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True)
    return list(tx.connection.execute(statement, rows).scalars())


def take(
    tx: Transaction, *, lease: float, limit: int, ids: Sequence[int] | None = None
) -> list[Message]:
    """Lease up to ``limit`` due messages (only ``ids``, if given) for ``lease`` seconds.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several relays take messages at once without
    waiting for each other; SQLite's write lock serialises them.
    """
    due = sa.select(outbox.c.id).where(outbox.c.publish_at <= tx.now)
    if ids is not None:
        due = due.where(outbox.c.id.in_(list(ids)))
    due = due.order_by(outbox.c.publish_at, outbox.c.id).limit(limit)
    if tx.connection.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    statement = (
        outbox.update()
        .where(outbox.c.id.in_(due.scalar_subquery()))
        .values(
            publish_at=tx.now + timedelta(seconds=lease),
            attempts=outbox.c.attempts + 1,
        )
        .returning(outbox.c.id, outbox.c.destination, outbox.c.payload, outbox.c.attempts)
    )
    taken = [
        Message(
            id=row["id"],
            destination=row["destination"],
            payload=row["payload"],
            attempts=row["attempts"],
        )
        for row in tx.connection.execute(statement).mappings()
    ]
    return sorted(taken, key=lambda message: message.id)


def remove(tx: Transaction, ids: Sequence[int]) -> None:
    """Delete messages whose delivery is done."""
    if ids:
        tx.connection.execute(outbox.delete().where(outbox.c.id.in_(list(ids))))


def remove_delivered(tx: Transaction, message_id: int, token: str | None) -> None:
    """Delete the message a delivery was for, unless its row now holds another message.

    SQLite reuses the ids of deleted rows, so a late duplicate of a message whose row is gone
    may carry the id of a newer message: ``token`` (the ``"message_id"`` its payload carries)
    tells them apart. Without a token (a message queued by an older version) the id decides.
    """
    if token is None:
        remove(tx, [message_id])
        return
    payload = tx.connection.execute(
        sa.select(outbox.c.payload).where(outbox.c.id == message_id)
    ).scalar_one_or_none()
    if isinstance(payload, Mapping) and payload.get("message_id") == token:
        remove(tx, [message_id])


def postpone(tx: Transaction, ids: Sequence[int], *, delay: float, error: str | None) -> None:
    """Make messages due again after ``delay`` seconds (``error``: why publishing failed)."""
    if ids:
        tx.connection.execute(
            outbox.update()
            .where(outbox.c.id.in_(list(ids)))
            .values(publish_at=tx.now + timedelta(seconds=delay), last_error=error)
        )


def count(connection: Connection, *, due_by: datetime | None = None) -> int:
    """How many messages wait in the outbox (only those due by ``due_by``, if given)."""
    statement = sa.select(sa.func.count()).select_from(outbox)
    if due_by is not None:
        statement = statement.where(outbox.c.publish_at <= due_by)
    return int(connection.execute(statement).scalar_one())
