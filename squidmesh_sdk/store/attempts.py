"""The attempt store: each try of a step, numbered 1..n per step run.

A step run's **latest** attempt is kept in the step run's own row (its ``attempt_*``
columns), so a step tried once writes no other row: its attempt begins with the step run's
insert (:mod:`squidmesh_sdk.store.step_starts`) and finishes with the step run's update. The
**earlier** attempts are rows of ``squidmesh_step_attempts``: when a next attempt begins, the
latest one's row is written there first (:func:`archive_latest`). Every attempt is still read
back, first to last (:func:`list_attempts`).

Writers hold the run's lock, as for every step run write.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk import error_records, errors
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import as_uuid, new_id_text
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import Attempt
from squidmesh_sdk.store.schema import attempts, step_runs
from squidmesh_sdk.store.types import UTCDateTime

__all__ = [
    "SUPERSEDED_ERROR",
    "abandon_attempt",
    "archive_latest",
    "attempt_count",
    "begin_attempt",
    "complete_attempt",
    "fail_attempt",
    "failed_attempt_count",
    "latest_attempt",
    "list_attempts",
    "running_attempt_values",
]


def attempt_count(connection: Connection, step_run_id: str | uuid.UUID) -> int:
    """How many attempts the step run has had."""
    count = connection.scalar(
        sa.select(step_runs.c.attempt_number).where(step_runs.c.id == as_uuid(step_run_id))
    )
    return int(count or 0)


def begin_attempt(tx: Transaction, step_run_id: str | uuid.UUID) -> Attempt:
    """Begin the step run's next attempt, ``running``; the latest one so far is archived.

    One statement when the step run has no attempt yet. Callers hold the run's lock.

    Raises:
        StaleRecord: the step run does not exist.
    """
    params = {"p_attempt_id": new_id_text(), "p_step_run_id": step_run_id, "p_now": tx.now}
    row = _BEGIN.first(tx.connection, params)
    if row is None and archive_latest(tx, step_run_id):
        row = _BEGIN.first(tx.connection, params)
    if row is None:
        raise errors.StaleRecord("step run", str(step_run_id), None)
    attempt = Attempt.latest_of(row)
    assert attempt is not None  # noqa: S101 - the update set it
    return attempt


def archive_latest(tx: Transaction, step_run_id: str | uuid.UUID) -> bool:
    """Move the step run's latest attempt, if it has one, to ``squidmesh_step_attempts``.

    What must happen before a next attempt begins; the step run's row then holds none (its
    ``attempt_number`` still counts it). One still ``running`` is archived ``abandoned``
    (code ``superseded``): a later attempt begins, so nothing will finish it. The table holds
    finished attempts only (migration 11 makes it refuse a ``running`` row, so that a process
    of an older release, which inserts its attempts there, fails instead of numbering them
    apart from this one's). Returns whether there was one.
    """
    params = {"p_step_run_id": step_run_id}
    archived = _ARCHIVE.execute(
        tx.connection, {**params, "p_now": tx.now, "p_superseded": SUPERSEDED_ERROR}
    )
    if not archived:
        return False
    _CLEAR_LATEST.execute(tx.connection, params)
    return True


def complete_attempt(tx: Transaction, attempt: Attempt) -> Attempt:
    """Mark a running attempt completed.

    Raises:
        StaleRecord: the attempt is not running (or is not its step run's latest).
    """
    return _finish(tx, attempt, "completed", None)


def fail_attempt(tx: Transaction, attempt: Attempt, error: Mapping[str, Any]) -> Attempt:
    """Mark a running attempt failed with ``error``.

    Raises:
        StaleRecord: the attempt is not running (or is not its step run's latest).
    """
    return _finish(tx, attempt, "failed", dict(error))


def abandon_attempt(tx: Transaction, attempt: Attempt, error: Mapping[str, Any]) -> Attempt:
    """Mark a running attempt ``abandoned``: whoever ran it stopped before it finished.

    Raises:
        StaleRecord: the attempt is not running (or is not its step run's latest).
    """
    return _finish(tx, attempt, "abandoned", dict(error))


def failed_attempt_count(connection: Connection, step_run_id: str | uuid.UUID) -> int:
    """How many attempts of the step run failed (abandoned ones do not count)."""
    count = connection.scalar(_FAILED_COUNT, {"p_step_run_id": as_uuid(step_run_id)})
    return int(count or 0)


def latest_attempt(connection: Connection, step_run_id: str | uuid.UUID) -> Attempt | None:
    """The step run's most recent attempt (``None`` before its first)."""
    row = _LATEST.first(connection, {"p_step_run_id": step_run_id})
    return Attempt.latest_of(row) if row else None


def list_attempts(connection: Connection, step_run_id: str | uuid.UUID) -> list[Attempt]:
    """Every attempt of the step run, first to last.

    The latest is read first, and the earlier ones are those numbered below it: on a READ
    COMMITTED connection a next attempt committed between the two reads then changes
    nothing, instead of listing one attempt twice.
    """
    latest = latest_attempt(connection, step_run_id)
    if latest is None:
        return []
    earlier = connection.execute(
        sa.select(attempts)
        .where(
            attempts.c.step_run_id == as_uuid(step_run_id),
            attempts.c.attempt_number < latest.number,
        )
        .order_by(attempts.c.attempt_number)
    ).mappings()
    return [*(Attempt.from_row(row) for row in earlier), latest]


def running_attempt_values(attempt_id: Any, number: Any, now: Any) -> dict[str, Any]:
    """A step run's columns for its latest attempt, ``attempt_id``, begun ``running`` at ``now``.

    SQL expressions all: what a step run's insert or claim sets to begin an attempt with it.
    """
    return {
        "attempt_id": attempt_id,
        "attempt_number": number,
        "attempt_status": "running",
        "attempt_error": sa.null(),
        "attempt_started_at": now,
        "attempt_updated_at": now,
    }


SUPERSEDED_ERROR: dict[str, Any] = error_records.error_record(
    "abandoned",
    "step attempt abandoned: a later attempt of the step began while it was marked running",
    code="superseded",
    retryable=True,
)
"""The error of an attempt archived while still ``running`` (see :func:`archive_latest`)."""

_LATEST_ATTEMPT_CLEARED: dict[str, Any] = {
    "attempt_id": sa.null(),
    "attempt_status": sa.null(),
    "attempt_error": sa.null(),
    "attempt_started_at": sa.null(),
    "attempt_updated_at": sa.null(),
}
"""A step run's columns once its latest attempt was archived (its number is kept)."""


def _finish(
    tx: Transaction, attempt: Attempt, status: str, error: dict[str, Any] | None
) -> Attempt:
    row = _FINISH.first(
        tx.connection,
        {
            "p_step_run_id": attempt.step_run_id,
            "p_attempt_id": attempt.id,
            "p_status": status,
            "p_error": error,
            "p_now": tx.now,
        },
    )
    finished = Attempt.latest_of(row) if row is not None else None
    if finished is None:
        raise errors.StaleRecord("attempt", attempt.id, _status(tx.connection, attempt))
    return finished


def _status(connection: Connection, attempt: Attempt) -> str | None:
    """The stored status of ``attempt``, wherever it is (``None``: not found)."""
    latest = latest_attempt(connection, attempt.step_run_id)
    if latest is not None and latest.id == attempt.id:
        return latest.status
    return connection.scalar(
        sa.select(attempts.c.status).where(attempts.c.id == as_uuid(attempt.id))
    )


_LATEST_COLUMNS = (
    step_runs.c.id,
    step_runs.c.attempt_id,
    step_runs.c.attempt_number,
    step_runs.c.attempt_status,
    step_runs.c.attempt_error,
    step_runs.c.attempt_started_at,
    step_runs.c.attempt_updated_at,
)

_BEGIN = Prepared(
    lambda _: (
        step_runs.update()
        .where(step_runs.c.id == sa.bindparam("p_step_run_id"), step_runs.c.attempt_id.is_(None))
        .values(
            running_attempt_values(
                sa.bindparam("p_attempt_id", type_=sa.Uuid),
                step_runs.c.attempt_number + 1,
                sa.bindparam("p_now", type_=UTCDateTime),
            )
        )
        .returning(*_LATEST_COLUMNS)
    )
)


def _archive_statement(_dialect: str) -> sa.Insert:
    running = step_runs.c.attempt_status == "running"
    superseded = sa.bindparam("p_superseded", type_=attempts.c.error.type)
    now = sa.bindparam("p_now", type_=UTCDateTime)
    return attempts.insert().from_select(
        ["id", "step_run_id", "attempt_number", "status", "error", "inserted_at", "updated_at"],
        sa.select(
            step_runs.c.attempt_id,
            step_runs.c.id,
            step_runs.c.attempt_number,
            sa.case((running, "abandoned"), else_=step_runs.c.attempt_status),
            sa.case((running, superseded), else_=step_runs.c.attempt_error),
            step_runs.c.attempt_started_at,
            sa.case((running, now), else_=step_runs.c.attempt_updated_at),
        ).where(
            step_runs.c.id == sa.bindparam("p_step_run_id"), step_runs.c.attempt_id.is_not(None)
        ),
    )


_ARCHIVE = Prepared(_archive_statement)
_CLEAR_LATEST = Prepared(
    lambda _: (
        step_runs.update()
        .where(step_runs.c.id == sa.bindparam("p_step_run_id"))
        .values(_LATEST_ATTEMPT_CLEARED)
    )
)
_FINISH = Prepared(
    lambda _: (
        step_runs.update()
        .where(  # the step run whose latest attempt this is, still running
            step_runs.c.id == sa.bindparam("p_step_run_id"),
            step_runs.c.attempt_id == sa.bindparam("p_attempt_id", type_=sa.Uuid),
            step_runs.c.attempt_status == "running",
        )
        .values(
            attempt_status=sa.bindparam("p_status"),
            attempt_error=sa.bindparam("p_error", type_=step_runs.c.attempt_error.type),
            attempt_updated_at=sa.bindparam("p_now", type_=UTCDateTime),
        )
        .returning(*_LATEST_COLUMNS)
    )
)
_LATEST = Prepared(
    lambda _: sa.select(*_LATEST_COLUMNS).where(step_runs.c.id == sa.bindparam("p_step_run_id"))
)
_FAILED_COUNT = sa.select(
    sa.select(sa.func.count())
    .where(attempts.c.step_run_id == sa.bindparam("p_step_run_id"), attempts.c.status == "failed")
    .scalar_subquery()
    + sa.select(sa.func.count())
    .where(step_runs.c.id == sa.bindparam("p_step_run_id"), step_runs.c.attempt_status == "failed")
    .scalar_subquery()
)
