"""Retention: finding finished runs old enough to delete, and deleting them with their rows.

A purge walks the runs of one finished status oldest first, by creation (the index on
``status, inserted_at``: no index covers ``updated_at``, so that a step's update of its run
touches no index), a batch at a time, and deletes each batch in a transaction of its own, so
deleting millions of runs never holds a long lock. A run is a candidate only when it is
finished (``completed``, ``failed`` or ``cancelled``: no other status is ever purged), last
changed before the cutoff, and has no work left: no queued or running job, no compensation
job of any status (a dead-lettered rollback still has to run), no outbox message, no child
run that has not finished (an abandoned child goes on after its parent ended, and reads it
when it finishes). The deleting transaction checks all of it again under the runs' locks, so
a run that changed since it was listed is left alone.

``squidmesh_maintenance`` lets workers take turns at periodic tasks such as the purge: a
worker advances a task's ``last_run_at`` with a compare-and-set, so one of them at a time does
it, at most once per interval.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.store.database import Transaction, upsert
from squidmesh_sdk.store.ids import as_uuid
from squidmesh_sdk.store.records import RunStatus
from squidmesh_sdk.store.schema import (
    attempts,
    jobs,
    maintenance,
    outbox,
    run_events,
    runs,
    step_runs,
)

__all__ = [
    "FINISHED",
    "TABLES",
    "Candidate",
    "Criteria",
    "candidates",
    "count_rows",
    "delete_runs",
    "extend_turn",
    "take_turn",
]

FINISHED: tuple[RunStatus, ...] = ("completed", "failed", "cancelled")
"""The only statuses a purge deletes."""

TABLES: tuple[str, ...] = (
    runs.name,
    step_runs.name,
    attempts.name,
    run_events.name,
    jobs.name,
    outbox.name,
)
"""The tables a purge deletes from, as the keys of its row counts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Criteria:
    """Which runs may be purged.

    Attributes:
        cutoff: Runs last changed (``updated_at``) before this time.
        key_cutoff: Runs holding an idempotency key (a cron window's, or one a run was started
            with) must also be last changed before this (no later than ``cutoff``): the key is
            what stops a late activation of the same window, or a retried start, from starting
            it again, so it is kept longer.
        workflow: Only runs of this workflow, if given.
    """

    cutoff: datetime
    key_cutoff: datetime
    workflow: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A run a purge may delete: its id, and where the walk resumes after it (creation, id)."""

    id: str
    workflow: str
    status: RunStatus
    inserted_at: datetime


def candidates(
    connection: Connection,
    criteria: Criteria,
    status: RunStatus,
    *,
    after: Candidate | None = None,
    limit: int,
) -> list[Candidate]:
    """Up to ``limit`` purgeable runs in ``status``, oldest first, after ``after``.

    Raises:
        ValueError: ``status`` is not a finished status.
    """
    if status not in FINISHED:
        raise ValueError(f"only finished runs are purged, not {status!r} ones")
    query = (
        sa.select(runs.c.id, runs.c.workflow, runs.c.status, runs.c.inserted_at)
        .where(
            runs.c.status == status,
            # Implied by the cutoff on updated_at (a run changes after it is created); stated
            # so that the walk reads only the index's range before the cutoff.
            runs.c.inserted_at < criteria.cutoff,
            *_purgeable(criteria),
        )
        .order_by(runs.c.inserted_at, runs.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            sa.tuple_(runs.c.inserted_at, runs.c.id)
            > sa.tuple_(after.inserted_at, as_uuid(after.id))
        )
    return [
        Candidate(str(row.id), row.workflow, row.status, row.inserted_at)
        for row in connection.execute(query)
    ]


def count_rows(connection: Connection, run_ids: Collection[str]) -> dict[str, int]:
    """Rows of these runs in each table of :data:`TABLES` (what deleting them would delete)."""
    keys = [as_uuid(run_id) for run_id in run_ids]
    counts: dict[str, int] = {}
    for table, where in _owned(keys):
        count = sa.select(sa.func.count()).select_from(table).where(where)
        counts[table.name] = connection.scalar(count) or 0
    return counts


def delete_runs(
    tx: Transaction, run_ids: Collection[str], criteria: Criteria, statuses: Collection[str]
) -> tuple[list[str], dict[str, int]]:
    """Delete the runs among ``run_ids`` that are still purgeable, with all their rows.

    The runs are locked and checked again (status among ``statuses`` and finished, criteria,
    no work left), so a run changed since it was listed is kept. Runs replayed from a deleted
    run keep going, their ``replayed_from_run_id`` set to NULL.

    Returns:
        The ids deleted, and the rows deleted per table of :data:`TABLES`.
    """
    wanted = [status for status in statuses if status in FINISHED]
    if not run_ids or not wanted:
        return [], dict.fromkeys(TABLES, 0)
    still = tx.connection.execute(
        sa.select(runs.c.id)
        .where(
            runs.c.id.in_([as_uuid(run_id) for run_id in run_ids]),
            runs.c.status.in_(wanted),
            *_purgeable(criteria),
        )
        .order_by(runs.c.id)  # one lock order for concurrent purges
        .with_for_update()
    )
    keys = [row.id for row in still]
    if not keys:
        return [], dict.fromkeys(TABLES, 0)
    # Children first, so the counts are exact whether or not the database cascades.
    counts: dict[str, int] = {}
    for table, where in reversed(_owned(keys)[1:]):
        counts[table.name] = tx.connection.execute(sa.delete(table).where(where)).rowcount
    tx.connection.execute(
        runs.update().where(runs.c.replayed_from_run_id.in_(keys)).values(replayed_from_run_id=None)
    )
    counts[runs.name] = tx.connection.execute(sa.delete(runs).where(runs.c.id.in_(keys))).rowcount
    return [str(key) for key in keys], {table: counts.get(table, 0) for table in TABLES}


def take_turn(tx: Transaction, task: str, every: timedelta) -> datetime | None:
    """Take this turn at ``task`` if nobody did in the last ``every``; ``None`` otherwise.

    Returns:
        The time the turn was taken (``tx.now``), which :func:`extend_turn` expects.
    """
    never = tx.now - every - every
    tx.connection.execute(
        upsert(tx.connection.dialect.name, maintenance)
        .values(task=task, last_run_at=never, updated_at=tx.now)
        .on_conflict_do_nothing(index_elements=[maintenance.c.task])
    )
    taken = tx.connection.execute(
        maintenance.update()
        .where(maintenance.c.task == task, maintenance.c.last_run_at <= tx.now - every)
        .values(last_run_at=tx.now, updated_at=tx.now)
    )
    return tx.now if taken.rowcount == 1 else None


def extend_turn(tx: Transaction, task: str, taken_at: datetime) -> datetime | None:
    """Keep a turn taken at ``taken_at`` (a long task); ``None`` if another worker took it."""
    kept = tx.connection.execute(
        maintenance.update()
        .where(maintenance.c.task == task, maintenance.c.last_run_at == taken_at)
        .values(last_run_at=tx.now, updated_at=tx.now)
    )
    return tx.now if kept.rowcount == 1 else None


def _purgeable(criteria: Criteria) -> list[sa.ColumnElement[bool]]:
    """Conditions on ``squidmesh_runs`` rows shared by listing and deleting."""
    live_job = sa.exists().where(
        jobs.c.run_id == runs.c.id,
        sa.or_(jobs.c.status.in_(("queued", "running")), jobs.c.kind == "compensation"),
    )
    message = sa.exists().where(outbox.c.run_id == runs.c.id)
    # A child that may still finish reads its parent then (an abandoned one goes on after its
    # parent ended): the parent is kept until its children have finished too.
    child = runs.alias("child")
    unfinished_child = sa.exists().where(
        child.c.parent_run_id == runs.c.id, child.c.status.not_in(FINISHED)
    )
    conditions: list[sa.ColumnElement[bool]] = [
        runs.c.updated_at < criteria.cutoff,
        sa.or_(
            sa.and_(runs.c.idempotency_key.is_(None), runs.c.start_key.is_(None)),
            runs.c.updated_at < criteria.key_cutoff,
        ),
        ~live_job,
        ~message,
        ~unfinished_child,
    ]
    if criteria.workflow is not None:
        conditions.append(runs.c.workflow == criteria.workflow)
    return conditions


def _owned(keys: Sequence[uuid.UUID]) -> list[tuple[sa.Table, sa.ColumnElement[bool]]]:
    """Each table's rows belonging to the runs ``keys``, parents before children."""
    steps = sa.select(step_runs.c.id).where(step_runs.c.run_id.in_(keys))
    return [
        (runs, runs.c.id.in_(keys)),
        (step_runs, step_runs.c.run_id.in_(keys)),
        (attempts, attempts.c.step_run_id.in_(steps.scalar_subquery())),
        (run_events, run_events.c.run_id.in_(keys)),
        (jobs, jobs.c.run_id.in_(keys)),
        (outbox, outbox.c.run_id.in_(keys)),
    ]
