"""The attempt store: one row per try of a step, numbered 1..n per step run."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk import errors
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import as_uuid, new_id_text
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import Attempt
from squidmesh_sdk.store.schema import attempts
from squidmesh_sdk.store.types import UTCDateTime

__all__ = [
    "abandon_attempt",
    "attempt_count",
    "begin_attempt",
    "complete_attempt",
    "fail_attempt",
    "failed_attempt_count",
    "latest_attempt",
    "list_attempts",
    "mark_completed",
    "next_attempt",
    "next_attempt_number",
]


def next_attempt_number(connection: Connection, step_run_id: str | uuid.UUID) -> int:
    """The number the next attempt of this step run will get."""
    latest = connection.scalar(
        sa.select(sa.func.max(attempts.c.attempt_number)).where(
            attempts.c.step_run_id == as_uuid(step_run_id)
        )
    )
    return int(latest or 0) + 1


def begin_attempt(tx: Transaction, step_run_id: str | uuid.UUID) -> Attempt:
    """Insert the next ``running`` attempt of a step run.

    The number is computed inside the ``INSERT`` statement; callers hold the run's lock, and the
    unique ``(step_run_id, attempt_number)`` constraint rejects any writer that does not.
    """
    row = _BEGIN_ATTEMPT.first(
        tx.connection, {"p_id": new_id_text(), "p_step_run_id": step_run_id, "p_now": tx.now}
    )
    assert row is not None  # noqa: S101 - INSERT ... RETURNING returns the row
    return Attempt.from_row(row)


def complete_attempt(tx: Transaction, attempt_id: str | uuid.UUID) -> Attempt:
    """Mark a running attempt completed.

    Raises:
        StaleRecord: the attempt is not running (or does not exist).
    """
    return _finish(tx, attempt_id, "completed", None)


def mark_completed(tx: Transaction, attempt_id: str | uuid.UUID) -> None:
    """Like :func:`complete_attempt`, without reading the attempt back (the step hot path).

    On PostgreSQL the update may wait for the transaction's next statement (see
    :meth:`~squidmesh_sdk.store.prepared.Prepared.send`): it raises then, or at commit.

    Raises:
        StaleRecord: the attempt is not running (or does not exist).
    """
    params = {"p_id": attempt_id, "p_status": "completed", "p_error": None, "p_now": tx.now}

    def check(count: int) -> None:
        if not count:
            _finish(tx, attempt_id, "completed", None)  # raises StaleRecord, with the status

    _FINISH_QUIETLY.send(tx.connection, params, check)


def fail_attempt(tx: Transaction, attempt_id: str | uuid.UUID, error: Mapping[str, Any]) -> Attempt:
    """Mark a running attempt failed with ``error``.

    Raises:
        StaleRecord: the attempt is not running (or does not exist).
    """
    return _finish(tx, attempt_id, "failed", dict(error))


def abandon_attempt(
    tx: Transaction, attempt_id: str | uuid.UUID, error: Mapping[str, Any]
) -> Attempt:
    """Mark a running attempt ``abandoned``: whoever ran it stopped before it finished.

    Raises:
        StaleRecord: the attempt is not running (or does not exist).
    """
    return _finish(tx, attempt_id, "abandoned", dict(error))


def failed_attempt_count(connection: Connection, step_run_id: str | uuid.UUID) -> int:
    """How many attempts of the step run failed (abandoned ones do not count)."""
    count = connection.scalar(
        sa.select(sa.func.count()).where(
            attempts.c.step_run_id == as_uuid(step_run_id), attempts.c.status == "failed"
        )
    )
    return int(count or 0)


def attempt_count(connection: Connection, step_run_id: str | uuid.UUID) -> int:
    """How many attempts the step run has had."""
    return next_attempt_number(connection, step_run_id) - 1


def latest_attempt(connection: Connection, step_run_id: str | uuid.UUID) -> Attempt | None:
    """The step run's most recent attempt."""
    row = _LATEST.first(connection, {"p_step_run_id": step_run_id})
    return Attempt.from_row(row) if row else None


def list_attempts(connection: Connection, step_run_id: str | uuid.UUID) -> list[Attempt]:
    """Every attempt of the step run, first to last."""
    rows = connection.execute(
        sa.select(attempts)
        .where(attempts.c.step_run_id == as_uuid(step_run_id))
        .order_by(attempts.c.attempt_number)
    ).mappings()
    return [Attempt.from_row(row) for row in rows]


def _finish(
    tx: Transaction, attempt_id: str | uuid.UUID, status: str, error: dict[str, Any] | None
) -> Attempt:
    row = _FINISH.first(
        tx.connection,
        {"p_id": attempt_id, "p_status": status, "p_error": error, "p_now": tx.now},
    )
    if row is None:
        current = tx.connection.scalar(
            sa.select(attempts.c.status).where(attempts.c.id == as_uuid(attempt_id))
        )
        raise errors.StaleRecord("attempt", str(attempt_id), current)
    return Attempt.from_row(row)


def next_attempt(attempt_id: Any, step_run_id: Any) -> sa.Insert:
    """``INSERT`` of step run ``step_run_id``'s next ``running`` attempt, ``attempt_id``.

    Both are SQL expressions (bind parameters, or the column of a ``WITH`` that just began the
    step run); ``p_now`` stamps it. The number is computed in the statement: callers hold the
    run's lock, and the unique ``(step_run_id, attempt_number)`` constraint rejects any writer
    that does not. Returns the attempt's row.
    """
    now = sa.bindparam("p_now", type_=UTCDateTime)
    number = (
        sa.select(sa.func.coalesce(sa.func.max(attempts.c.attempt_number), 0) + 1)
        .where(attempts.c.step_run_id == step_run_id)
        .scalar_subquery()
    )
    values = sa.select(attempt_id, step_run_id, number, sa.literal("running"), now, now)
    columns = ["id", "step_run_id", "attempt_number", "status", "inserted_at", "updated_at"]
    return attempts.insert().from_select(columns, values).returning(*attempts.c)


_BEGIN_ATTEMPT = Prepared(
    lambda _: next_attempt(
        sa.bindparam("p_id", type_=sa.Uuid), sa.bindparam("p_step_run_id", type_=sa.Uuid)
    )
)


_FINISH = Prepared(
    lambda _: (
        attempts.update()
        .where(attempts.c.id == sa.bindparam("p_id"), attempts.c.status == "running")
        .values(
            status=sa.bindparam("p_status"),
            error=sa.bindparam("p_error"),
            updated_at=sa.bindparam("p_now"),
        )
        .returning(*attempts.c)
    )
)
_FINISH_QUIETLY = Prepared(
    lambda _: (
        attempts.update()
        .where(attempts.c.id == sa.bindparam("p_id"), attempts.c.status == "running")
        .values(
            status=sa.bindparam("p_status"),
            error=sa.bindparam("p_error"),
            updated_at=sa.bindparam("p_now"),
        )
    )
)
_LATEST = Prepared(
    lambda _: (
        sa.select(attempts)
        .where(attempts.c.step_run_id == sa.bindparam("p_step_run_id"))
        .order_by(attempts.c.attempt_number.desc())
        .limit(1)
    )
)
