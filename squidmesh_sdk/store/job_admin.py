"""The operator's reads and repairs of the database queue (``squidmesh jobs``, the inspector).

:func:`find_jobs` with the *state* an operator sees (``queued`` jobs split into due ``queued``
and future ``delayed``), :func:`queue_stats` per queue, and :func:`requeue_failed` /
:func:`delete_failed` for dead letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import as_uuid
from squidmesh_sdk.store.jobs import Job
from squidmesh_sdk.store.schema import job_status_is, jobs

__all__ = [
    "JOB_STATES",
    "QueueStats",
    "count_by_status",
    "count_jobs",
    "delete_failed",
    "find_jobs",
    "job_state",
    "queue_stats",
    "requeue_failed",
]


JOB_STATES = ("queued", "delayed", "running", "failed")
"""What an operator sees: ``queued`` (due now), ``delayed`` (queued with a future ``run_at``:
a retry backoff, a wait), ``running`` (leased to a worker), ``failed`` (a dead letter)."""


def count_by_status(connection: Connection) -> dict[str, int]:
    """Number of jobs per status: the queue depth an operator watches."""
    rows = connection.execute(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status))
    return {status: count for status, count in rows}  # noqa: C416 - rows are not pairs to mypy


def job_state(job: Job, now: datetime) -> str:
    """The job's state as an operator sees it (one of :data:`JOB_STATES`)."""
    if job.status == "queued" and job.run_at > now:
        return "delayed"
    return job.status


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats:
    """The depth of one queue: jobs per state, and the wait of its oldest due job."""

    queue: str
    queued: int
    delayed: int
    running: int
    failed: int
    oldest_due_at: datetime | None
    """The ``run_at`` of the queued job that has been due longest (``None``: nothing due)."""


def _filters(
    now: datetime,
    *,
    states: Sequence[str] | None,
    queue: str | None,
    workflow: str | None,
    run_id: str | None,
) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if states:
        by_state = {
            "queued": sa.and_(job_status_is("queued"), jobs.c.run_at <= now),
            "delayed": sa.and_(job_status_is("queued"), jobs.c.run_at > now),
            "running": job_status_is("running"),
            "failed": job_status_is("failed"),
        }
        conditions.append(sa.or_(*(by_state[state] for state in states)))
    if queue is not None:
        conditions.append(jobs.c.queue == queue)
    if workflow is not None:
        conditions.append(jobs.c.workflow == workflow)
    if run_id is not None:
        conditions.append(jobs.c.run_id == as_uuid(run_id))
    return conditions


def find_jobs(
    connection: Connection,
    *,
    now: datetime,
    states: Sequence[str] | None = None,
    queue: str | None = None,
    workflow: str | None = None,
    run_id: str | None = None,
    limit: int | None = None,
    after: int | None = None,
) -> list[Job]:
    """Jobs in id order (oldest first), filtered by state, queue, workflow and run.

    States are those of :data:`JOB_STATES`; ``now`` tells ``queued`` from ``delayed``. Pass
    the last id of a page as ``after`` for the next one (keyset paging on the primary key).
    """
    conditions = _filters(now, states=states, queue=queue, workflow=workflow, run_id=run_id)
    if after is not None:
        conditions.append(jobs.c.id > after)
    query = sa.select(jobs).where(*conditions).order_by(jobs.c.id).limit(limit)
    return [Job.from_row(row) for row in connection.execute(query).mappings()]


def count_jobs(
    connection: Connection,
    *,
    now: datetime,
    states: Sequence[str] | None = None,
    queue: str | None = None,
    workflow: str | None = None,
    run_id: str | None = None,
) -> int:
    """How many jobs :func:`find_jobs` would return without a limit."""
    conditions = _filters(now, states=states, queue=queue, workflow=workflow, run_id=run_id)
    return connection.scalar(sa.select(sa.func.count()).select_from(jobs).where(*conditions)) or 0


def requeue_failed(tx: Transaction, job_id: int) -> Job | None:
    """Put a ``failed`` job (a dead letter) back in its queue, due now.

    Returns ``None`` when the job is not ``failed`` (or not there).

    Its delivery count starts again from 0, so it gets a worker's whole ``max_deliveries``
    budget with backoff again. Its ``last_error`` is kept: the next delivery then knows the
    previous one raised, and takes over the step that delivery may have left running.
    """
    statement = (
        jobs.update()
        .where(jobs.c.id == job_id, jobs.c.status == "failed")
        .values(
            status="queued",
            run_at=tx.now,
            deliveries=0,
            locked_by=None,
            locked_until=None,
            updated_at=tx.now,
        )
        .returning(*jobs.c)
    )
    row = tx.connection.execute(statement).mappings().first()
    return Job.from_row(row) if row is not None else None


def delete_failed(tx: Transaction, job_id: int) -> bool:
    """Delete a ``failed`` job (a dead letter); ``False`` if it is not ``failed`` any more."""
    result = tx.connection.execute(
        jobs.delete().where(jobs.c.id == job_id, jobs.c.status == "failed")
    )
    return result.rowcount == 1


def queue_stats(connection: Connection, now: datetime) -> list[QueueStats]:
    """Per queue that has jobs, by name: jobs per state and the oldest due job's ``run_at``."""
    due = sa.and_(job_status_is("queued"), jobs.c.run_at <= now)
    counts = connection.execute(
        sa.select(
            jobs.c.queue,
            sa.func.sum(sa.case((due, 1), else_=0)),
            sa.func.sum(
                sa.case((sa.and_(job_status_is("queued"), jobs.c.run_at > now), 1), else_=0)
            ),
            sa.func.sum(sa.case((job_status_is("running"), 1), else_=0)),
            sa.func.sum(sa.case((job_status_is("failed"), 1), else_=0)),
        ).group_by(jobs.c.queue)
    ).all()
    oldest_rows = connection.execute(
        sa.select(jobs.c.queue, sa.func.min(jobs.c.run_at)).where(due).group_by(jobs.c.queue)
    )
    oldest: dict[str, datetime] = {queue: run_at for queue, run_at in oldest_rows}  # noqa: C416
    return [
        QueueStats(
            queue=queue,
            queued=int(queued or 0),
            delayed=int(delayed or 0),
            running=int(running or 0),
            failed=int(failed or 0),
            oldest_due_at=oldest.get(queue),
        )
        for queue, queued, delayed, running, failed in sorted(counts, key=lambda row: row[0])
    ]
