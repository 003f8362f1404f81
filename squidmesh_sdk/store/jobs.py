"""The job store behind the built-in database queue.

A job is ``queued`` until its ``run_at``, then ``running`` under a worker's lease
(``locked_by`` / ``locked_until``), and deleted in the transaction that records its outcome.
A lease that runs out (the worker died, or lost the database) is *rescued*: the job is queued
again with ``rescues`` incremented, and its next delivery takes over the step it was running.
A job whose delivery keeps raising is retried with backoff, then kept as ``failed`` for an
operator to look at.

Claiming is :mod:`squidmesh_sdk.store.claims`; the operator's reads and repairs (``squidmesh
jobs``) are :mod:`squidmesh_sdk.store.job_admin`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.frozen import fast_init
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import as_uuid
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.schema import JobStatus, job_status_is, jobs
from squidmesh_sdk.store.types import UTCDateTime

__all__ = [
    "Job",
    "NewJob",
    "complete",
    "discard_queued",
    "enqueue",
    "extend_leases",
    "fail",
    "finish",
    "get_job",
    "lease_next_of_run",
    "list_jobs",
    "other_live_delivery",
    "release",
    "release_to_any_worker",
    "rescue_expired",
    "reuse",
    "reuse_later",
]


@fast_init
@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert."""

    kind: str
    payload: Mapping[str, Any]
    queue: str
    run_id: str | None = None
    step: str | None = None
    workflow: str | None = None
    """The workflow a worker must hold to take the job."""
    definition_version: str | None = None
    """The version of it a worker must hold (``None``: any version; cron jobs)."""
    delay: float | None = None
    leased_to: str | None = None
    """Insert it already leased to this worker, which will perform it next (a continuation)."""
    lease: float = 0.0
    priority: int = 0
    """Claims take higher priorities first (the run's priority)."""
    concurrency_key: str | None = None
    """At most ``concurrency_limit`` running jobs share this key (``None``: no such limit)."""
    concurrency_limit: int | None = None


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A job row."""

    id: int
    queue: str
    kind: str
    payload: Mapping[str, Any]
    run_id: str | None
    step: str | None
    status: str
    run_at: datetime
    workflow: str | None = None
    definition_version: str | None = None
    deliveries: int
    rescues: int
    locked_by: str | None
    locked_until: datetime | None
    last_error: Mapping[str, Any] | None
    inserted_at: datetime | None = None
    updated_at: datetime | None = None
    priority: int = 0
    concurrency_key: str | None = None
    concurrency_limit: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Job:
        """Build from a ``squidmesh_jobs`` row."""
        return cls(
            id=row["id"],
            queue=row["queue"],
            kind=row["kind"],
            payload=row["payload"],
            run_id=str(row["run_id"]) if row["run_id"] is not None else None,
            step=row["step"],
            workflow=row["workflow"],
            definition_version=row["definition_version"],
            status=row["status"],
            run_at=row["run_at"],
            deliveries=row["deliveries"],
            rescues=row["rescues"],
            locked_by=row["locked_by"],
            locked_until=row["locked_until"],
            last_error=row["last_error"],
            inserted_at=row.get("inserted_at"),
            updated_at=row.get("updated_at"),
            priority=row.get("priority") or 0,
            concurrency_key=row.get("concurrency_key"),
            concurrency_limit=row.get("concurrency_limit"),
        )


def enqueue(tx: Transaction, new_jobs: Sequence[NewJob]) -> list[int]:
    """Insert queued jobs in the caller's transaction; return their ids, in order."""
    rows: list[dict[str, Any]] = [
        {
            "queue": job.queue,
            "kind": job.kind,
            "payload": dict(job.payload),
            "run_id": job.run_id,
            "step": job.step,
            "workflow": job.workflow,
            "definition_version": job.definition_version,
            "status": "running" if job.leased_to else "queued",
            "run_at": tx.now + timedelta(seconds=job.delay) if job.delay else tx.now,
            "deliveries": 1 if job.leased_to else 0,
            "rescues": 0,
            "locked_by": job.leased_to,
            "locked_until": tx.now + timedelta(seconds=job.lease) if job.leased_to else None,
            "last_error": None,
            "inserted_at": tx.now,
            "updated_at": tx.now,
            "priority": job.priority,
            "concurrency_key": job.concurrency_key,
            "concurrency_limit": job.concurrency_limit,
        }
        for job in new_jobs
    ]
    # One prepared insert a job, all sent together on PostgreSQL (one round trip): cheaper than
    # building and compiling a multi-row INSERT for each fan-out's number of rows.
    pending = [_INSERT.rows_later(tx.connection, row) for row in rows]
    return [fetch()[0]["id"] for fetch in pending]


def lease_next_of_run(
    tx: Transaction,
    run_id: str,
    *,
    worker: str,
    lease: float,
    queue: str,
    concurrency_key: str | None,
) -> Job | None:
    """Lease to ``worker`` the next due step job of run ``run_id`` in ``queue``, if any.

    For a worker that just finished a step of the run and has nothing to continue with: the
    run's other queued steps (a fan-out's branches) go to it instead of waiting for a claim.
    Only jobs a claim would hand over as they are qualify: not rescued, no delivery error,
    with no concurrency key or ``concurrency_key`` (the finished job's: the key's
    running count is unchanged). Claim order within the run (priority, ``run_at``, id); on
    PostgreSQL ``FOR UPDATE SKIP LOCKED``, as a claim.
    """
    row = _LEASE_NEXT_OF_RUN.first(
        tx.connection,
        {
            "p_run_id": run_id,
            "p_queue": queue,
            "p_key": concurrency_key,
            "p_worker": worker,
            "p_now": tx.now,
            "p_locked_until": tx.now + timedelta(seconds=lease),
        },
    )
    return Job.from_row(row) if row is not None else None


def reuse(tx: Transaction, held: Job, job: NewJob) -> datetime | None:
    """Rewrite the row of job ``held``, leased to ``job.leased_to``, into ``job`` (leased so).

    ``held`` is the job being delivered as its worker knows it: its run and concurrency key,
    and in ``locked_until`` a time its lease lasts at least until (``None``: not known), the
    time its claim or the last rewrite leased it until. Heartbeats only ever extend a lease
    (:func:`extend_leases`), so the row holds at least that.

    For the transaction that finishes job ``held`` and queues ``job`` for the same worker:
    the row is the new job from then on (fresh delivery count, no rescue, no error). It keeps
    the row's ``run_at`` and ``inserted_at`` (the chain's first job's), and its lease while
    ``held.locked_until`` leaves two thirds of ``job.lease``: heartbeats renew a lease every
    third of it, so the next step starts with at least two thirds of a lease, as a claimed job
    has just before its first heartbeat. Otherwise the lease is renewed to a full one.

    Only the indexed columns whose value changes are written (``held`` says what the row
    holds): SQLite rewrites the index entries of every column an update sets, changed or not,
    and each index page it dirties is one more page in the write-ahead log at commit (a chained
    step wrote 9.2 pages, 6.8 without these and the run's unchanged status). PostgreSQL keeps
    such an update in place (a heap-only tuple) either way.

    Returns the time the rewritten row's lease is known to last until, or ``None``, and
    nothing written, when the worker no longer holds the lease (a rescue requeued the job).
    """
    statement, params, leased_until = _rewrite(tx, held, job)
    return leased_until if statement.execute(tx.connection, params) == 1 else None


def reuse_later(tx: Transaction, held: Job, job: NewJob, lost: Callable[[], None]) -> datetime:
    """:func:`reuse`, assuming the lease holds; ``lost`` is called if it did not.

    On PostgreSQL the update goes to the server with the transaction's next statement, and
    ``lost`` runs then (it may write: the pipeline is closed by that time); on SQLite at once.
    Returns the time the rewritten row's lease is known to last until (unused when ``lost``
    runs: the job is inserted then).
    """

    def check(count: int) -> None:
        if count != 1:
            lost()

    statement, params, leased_until = _rewrite(tx, held, job)
    if tx.connection.dialect.name != "postgresql":
        check(statement.execute(tx.connection, params))
    else:
        statement.send(tx.connection, params, check)
    return leased_until


def _rewrite(tx: Transaction, held: Job, job: NewJob) -> tuple[Prepared, dict[str, Any], datetime]:
    """The statement and parameters that rewrite ``held``'s row into ``job``, and its lease."""
    assert job.leased_to is not None  # noqa: S101 - only a continuation reuses a row
    params: dict[str, Any] = {
        "p_id": held.id,
        "p_worker": job.leased_to,
        "queue": job.queue,
        "kind": job.kind,
        "payload": dict(job.payload),
        "step": job.step,
        "workflow": job.workflow,
        "definition_version": job.definition_version,
        "priority": job.priority,
        "concurrency_limit": job.concurrency_limit,
        "p_now": tx.now,
    }
    leased_until = held.locked_until
    renew = leased_until is None or leased_until < tx.now + timedelta(seconds=job.lease * 2 / 3)
    if renew:
        leased_until = params["locked_until"] = tx.now + timedelta(seconds=job.lease)
    other_run = job.run_id != held.run_id
    if other_run:
        params["run_id"] = job.run_id
    other_key = job.concurrency_key != held.concurrency_key
    if other_key:
        params["concurrency_key"] = job.concurrency_key
    assert leased_until is not None  # noqa: S101 - renewed when not known
    return _reuse_statement(other_run, other_key, renew), params, leased_until


@functools.cache
def _reuse_statement(run_id: bool, concurrency_key: bool, locked_until: bool) -> Prepared:
    """The rewrite of a delivered job's row that also sets the indexed columns named ``True``.

    ``status`` is not set: the row is ``running`` (the statement's condition) and stays so, and
    SQLite counts it as an indexed column (the lease index's condition names it).
    """
    indexed = {
        "run_id": run_id,
        "concurrency_key": concurrency_key,
        "locked_until": locked_until,
    }
    names = (
        "queue",
        "kind",
        "payload",
        "step",
        "workflow",
        "definition_version",
        "priority",
        "concurrency_limit",
        *(name for name, written in indexed.items() if written),
    )
    return Prepared(
        lambda _: (
            jobs.update()
            .where(
                jobs.c.id == sa.bindparam("p_id"),
                jobs.c.locked_by == sa.bindparam("p_worker"),
                jobs.c.status == "running",
            )
            .values(
                {
                    **{name: sa.bindparam(name) for name in names},
                    "deliveries": 1,
                    "rescues": 0,
                    "last_error": sa.null(),
                    "updated_at": sa.bindparam("p_now"),
                }
            )
        )
    )


def complete(tx: Transaction, job_id: int, *, worker: str) -> bool:
    """Delete a job its worker finished; ``False`` if the lease was lost to a rescue meanwhile."""
    return _COMPLETE.execute(tx.connection, {"p_id": job_id, "p_worker": worker}) == 1


def finish(tx: Transaction, job_id: int, *, worker: str) -> None:
    """Like :func:`complete`, for a caller that does not need to know whether the lease held.

    On PostgreSQL the delete goes to the server with the transaction's next statement.
    """
    _COMPLETE.send(tx.connection, {"p_id": job_id, "p_worker": worker})


def release(
    tx: Transaction,
    job_id: int,
    *,
    worker: str,
    delay: float = 0.0,
    error: Mapping[str, Any] | None = None,
) -> bool:
    """Give a leased job back to the queue, due after ``delay`` seconds."""
    result = tx.connection.execute(
        jobs.update()
        .where(jobs.c.id == job_id, jobs.c.locked_by == worker, jobs.c.status == "running")
        .values(
            status="queued",
            locked_by=None,
            locked_until=None,
            run_at=tx.now + timedelta(seconds=delay),
            last_error=dict(error) if error is not None else jobs.c.last_error,
            updated_at=tx.now,
        )
    )
    return result.rowcount == 1


def fail(tx: Transaction, job_id: int, *, worker: str, error: Mapping[str, Any]) -> bool:
    """Stop delivering a job: keep it as ``failed`` (a dead letter) with its last error."""
    result = tx.connection.execute(
        jobs.update()
        .where(jobs.c.id == job_id, jobs.c.locked_by == worker, jobs.c.status == "running")
        .values(
            status="failed",
            locked_by=None,
            locked_until=None,
            last_error=dict(error),
            updated_at=tx.now,
        )
    )
    return result.rowcount == 1


def discard_queued(tx: Transaction, run_id: str) -> int:
    """Delete the run's step jobs no worker holds: the queued and delayed ones.

    For a run that was just finished (cancelled): their deliveries would only skip. A job a
    worker has leased, or is leasing right now (``SKIP LOCKED`` on PostgreSQL, so this never
    waits for a claim that waits for the run's lock), is left to its delivery, which skips too.
    """
    queued = _unclaimed_step_jobs(tx, run_id, job_status_is("queued"))
    result = tx.connection.execute(jobs.delete().where(jobs.c.id.in_(queued)))
    return result.rowcount


def release_to_any_worker(tx: Transaction, run_id: str) -> int:
    """Let any worker take the run's remaining step jobs, whatever workflow versions it holds.

    For a run that is cancelling: delivering its leftover job only closes it, which needs no
    definition, so a worker without the run's version (the version's last worker died, and the
    deploy that followed dropped it) must not leave it unclaimed. Jobs being claimed right now
    are skipped (``SKIP LOCKED`` on PostgreSQL, as :func:`discard_queued`): their claimer holds
    the version.
    """
    pinned = _unclaimed_step_jobs(tx, run_id, jobs.c.workflow.is_not(None))
    result = tx.connection.execute(
        jobs.update().where(jobs.c.id.in_(pinned)).values(workflow=None, definition_version=None)
    )
    return result.rowcount


def _unclaimed_step_jobs(
    tx: Transaction, run_id: str, condition: sa.ColumnElement[bool]
) -> sa.ScalarSelect[int]:
    """Ids of the run's step jobs matching ``condition``, minus any a claim is locking now.

    ``SKIP LOCKED`` on PostgreSQL: a cancellation that holds the run's lock must never wait for
    a claim that waits for the run's lock.
    """
    query = sa.select(jobs.c.id).where(
        jobs.c.run_id == uuid.UUID(run_id), jobs.c.kind == "step", condition
    )
    if tx.connection.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return query.scalar_subquery()


def extend_leases(tx: Transaction, *, worker: str, job_ids: Iterable[int], lease: float) -> int:
    """Heartbeat: push the leases of ``worker``'s running jobs ``lease`` seconds ahead.

    A lease already longer is kept: a heartbeat stamped before it waited for the rows' lock,
    behind a rewrite that renewed a lease meanwhile (:func:`reuse`), must not shorten it. So a
    lease only ever grows while its worker holds it, which :func:`reuse` relies on.
    """
    ids = list(job_ids)
    if not ids:
        return 0
    until = sa.bindparam("p_until", tx.now + timedelta(seconds=lease), type_=UTCDateTime)
    result = tx.connection.execute(
        jobs.update()
        .where(jobs.c.id.in_(ids), jobs.c.locked_by == worker, job_status_is("running"))
        .values(
            locked_until=sa.case(
                (sa.or_(jobs.c.locked_until.is_(None), jobs.c.locked_until < until), until),
                else_=jobs.c.locked_until,
            ),
            updated_at=tx.now,
        )
    )
    return result.rowcount


def rescue_expired(tx: Transaction) -> list[Job]:
    """Queue again every running job whose lease ran out; return them."""
    statement = (
        jobs.update()
        .where(job_status_is("running"), jobs.c.locked_until < tx.now)
        .values(
            status="queued",
            locked_by=None,
            locked_until=None,
            run_at=tx.now,
            rescues=jobs.c.rescues + 1,
            updated_at=tx.now,
        )
        .returning(*jobs.c)
    )
    return [Job.from_row(row) for row in tx.connection.execute(statement).mappings()]


def other_live_delivery(connection: Connection, job: Job, now: datetime) -> bool:
    """Whether another job for the same run and step is leased right now.

    A rescued job takes over its step only when nobody else may be running it.
    """
    if job.run_id is None or job.step is None:
        return False
    found = connection.scalar(
        sa.select(sa.literal(1))
        .where(
            jobs.c.run_id == uuid.UUID(job.run_id),
            jobs.c.step == job.step,
            jobs.c.id != job.id,
            job_status_is("running"),
            jobs.c.locked_until >= now,
        )
        .limit(1)
    )
    return found is not None


def list_jobs(
    connection: Connection,
    *,
    run_id: str | None = None,
    status: JobStatus | None = None,
) -> list[Job]:
    """Jobs in id order, optionally of one run and / or in one status."""
    query = sa.select(jobs).order_by(jobs.c.id)
    if run_id is not None:
        query = query.where(jobs.c.run_id == as_uuid(run_id))
    if status is not None:
        query = query.where(job_status_is(status))
    return [Job.from_row(row) for row in connection.execute(query).mappings()]


def get_job(connection: Connection, job_id: int) -> Job | None:
    """The job with this id, if it is still there (a settled job is deleted)."""
    row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return Job.from_row(row) if row is not None else None


_INSERT = Prepared(
    lambda _: (
        jobs.insert()
        .values({column.key: sa.bindparam(column.key) for column in jobs.c if column.key != "id"})
        .returning(jobs.c.id)
    )
)


def _lease_next_of_run_statement(dialect: str) -> Any:
    key = sa.bindparam("p_key", type_=jobs.c.concurrency_key.type)
    due = (
        sa.select(jobs.c.id)
        .where(
            jobs.c.run_id == sa.bindparam("p_run_id", type_=jobs.c.run_id.type),
            job_status_is("queued"),
            jobs.c.kind == "step",
            jobs.c.queue == sa.bindparam("p_queue"),
            jobs.c.run_at <= sa.bindparam("p_now", type_=jobs.c.run_at.type),
            jobs.c.rescues == 0,
            jobs.c.last_error.is_(None),
            sa.or_(jobs.c.concurrency_key.is_(None), jobs.c.concurrency_key == key),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
        .limit(1)
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return (
        jobs.update()
        .where(jobs.c.id == due.scalar_subquery())
        .values(
            status="running",
            deliveries=jobs.c.deliveries + 1,
            locked_by=sa.bindparam("p_worker"),
            locked_until=sa.bindparam("p_locked_until", type_=jobs.c.locked_until.type),
            updated_at=sa.bindparam("p_now", type_=jobs.c.updated_at.type),
        )
        .returning(*jobs.c)
    )


_LEASE_NEXT_OF_RUN = Prepared(_lease_next_of_run_statement)
_COMPLETE = Prepared(
    lambda _: jobs.delete().where(
        jobs.c.id == sa.bindparam("p_id"),
        jobs.c.locked_by == sa.bindparam("p_worker"),
        jobs.c.status == "running",
    )
)
