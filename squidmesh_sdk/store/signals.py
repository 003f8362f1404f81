"""Signals sent to runs: kept until a ``signal`` step of the run consumes them, oldest first."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import as_uuid, new_id
from squidmesh_sdk.store.records import Signal
from squidmesh_sdk.store.schema import signals

__all__ = ["consume", "find_by_key", "insert_signal", "list_signals", "oldest_pending"]


def insert_signal(
    tx: Transaction,
    run_id: str | uuid.UUID,
    name: str,
    payload: Any,
    *,
    idempotency_key: str | None,
) -> Signal:
    """Store a ``pending`` signal for the run (the caller holds the run's lock).

    Raises:
        IntegrityError: the run already has a signal with ``idempotency_key``.
    """
    values: dict[str, Any] = {
        "id": new_id(),
        "run_id": as_uuid(run_id),
        "name": name,
        "payload": payload,
        "idempotency_key": idempotency_key,
        "status": "pending",
        "step": None,
        "inserted_at": tx.now,
        "consumed_at": None,
    }
    tx.connection.execute(signals.insert().values(values))
    return Signal.from_row(values)


def find_by_key(connection: Connection, run_id: str | uuid.UUID, key: str) -> Signal | None:
    """The run's signal sent with idempotency key ``key``, if any."""
    row = (
        connection.execute(
            sa.select(signals).where(
                signals.c.run_id == as_uuid(run_id), signals.c.idempotency_key == key
            )
        )
        .mappings()
        .first()
    )
    return Signal.from_row(row) if row is not None else None


def oldest_pending(connection: Connection, run_id: str | uuid.UUID, name: str) -> Signal | None:
    """The run's oldest signal called ``name`` that no step has consumed yet."""
    row = (
        connection.execute(
            sa.select(signals)
            .where(
                signals.c.run_id == as_uuid(run_id),
                signals.c.name == name,
                signals.c.status == "pending",
            )
            .order_by(signals.c.inserted_at, signals.c.id)
            .limit(1)
        )
        .mappings()
        .first()
    )
    return Signal.from_row(row) if row is not None else None


def consume(tx: Transaction, signal: Signal, step: str) -> Signal:
    """Mark ``signal`` consumed by step run ``step`` (the caller holds the run's lock)."""
    tx.connection.execute(
        signals.update()
        .where(signals.c.id == as_uuid(signal.id))
        .values(status="consumed", step=step, consumed_at=tx.now)
    )
    return Signal(
        id=signal.id,
        run_id=signal.run_id,
        name=signal.name,
        payload=signal.payload,
        idempotency_key=signal.idempotency_key,
        status="consumed",
        step=step,
        inserted_at=signal.inserted_at,
        consumed_at=tx.now,
    )


def list_signals(connection: Connection, run_id: str | uuid.UUID) -> list[Signal]:
    """The run's signals, oldest first."""
    rows = connection.execute(
        sa.select(signals)
        .where(signals.c.run_id == as_uuid(run_id))
        .order_by(signals.c.inserted_at, signals.c.id)
    ).mappings()
    return [Signal.from_row(row) for row in rows]
