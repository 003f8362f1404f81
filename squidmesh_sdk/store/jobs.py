"""The job store behind the built-in database queue.

A job is ``queued`` until its ``run_at``, then ``running`` under a worker's lease
(``locked_by`` / ``locked_until``), and deleted in the transaction that records its outcome.
A lease that runs out (the worker died, or lost the database) is *rescued*: the job is queued
again with ``rescues`` incremented, and its next delivery takes over the step it was running.
A job whose delivery keeps raising is retried with backoff, then kept as ``failed`` for an
operator to look at.

The operator's reads and repairs (``squidmesh jobs``) are here too: :func:`find_jobs` with the
*state* an operator sees (``queued`` jobs split into due ``queued`` and future ``delayed``),
:func:`queue_stats`, and :func:`requeue_failed` / :func:`delete_failed` for dead letters.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.store import flow
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import as_uuid
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.schema import jobs, queue_limits
from squidmesh_sdk.store.types import UTCDateTime

__all__ = [
    "JOB_STATES",
    "Job",
    "NewJob",
    "QueueStats",
    "claim",
    "claim_order",
    "complete",
    "count_by_status",
    "count_jobs",
    "delete_failed",
    "discard_queued",
    "enqueue",
    "extend_leases",
    "fail",
    "find_jobs",
    "finish",
    "get_job",
    "job_state",
    "list_jobs",
    "other_live_delivery",
    "queue_stats",
    "release",
    "release_to_any_worker",
    "requeue_failed",
    "rescue_expired",
    "reuse",
    "reuse_later",
]

JOB_STATES = ("queued", "delayed", "running", "failed")
"""What an operator sees: ``queued`` (due now), ``delayed`` (queued with a future ``run_at``:
a retry backoff, a wait), ``running`` (leased to a worker), ``failed`` (a dead letter)."""


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
    if len(rows) == 1:
        row = _INSERT.first(tx.connection, rows[0])
        assert row is not None  # noqa: S101 - INSERT ... RETURNING returns the row
        return [row["id"]]
    for row in rows:  # SQLAlchemy's own statements take ids as UUIDs only
        row["run_id"] = as_uuid(row["run_id"]) if row["run_id"] is not None else None
    statement = jobs.insert().returning(jobs.c.id, sort_by_parameter_order=True)
    return list(tx.connection.execute(statement, rows).scalars())


def reuse(tx: Transaction, job_id: int, job: NewJob) -> bool:
    """Rewrite job ``job_id``, leased to ``job.leased_to``, into ``job`` (leased the same way).

    For the transaction that finishes job ``job_id`` and queues ``job`` for the same worker:
    the row is the new job from then on, as if it had been deleted and ``job`` inserted (fresh
    delivery count, no rescue, no error). ``False``, and nothing written, when the worker no
    longer holds the lease (a rescue requeued the job).
    """
    return _REUSE.execute(tx.connection, _reuse_params(tx, job_id, job)) == 1


def _reuse_params(tx: Transaction, job_id: int, job: NewJob) -> dict[str, Any]:
    assert job.leased_to is not None  # noqa: S101 - only a continuation reuses a row
    return {
        "p_id": job_id,
        "p_worker": job.leased_to,
        "queue": job.queue,
        "kind": job.kind,
        "payload": dict(job.payload),
        "run_id": job.run_id,
        "step": job.step,
        "workflow": job.workflow,
        "definition_version": job.definition_version,
        "locked_until": tx.now + timedelta(seconds=job.lease),
        "priority": job.priority,
        "concurrency_key": job.concurrency_key,
        "concurrency_limit": job.concurrency_limit,
        "p_now": tx.now,
    }


def reuse_later(tx: Transaction, job_id: int, job: NewJob, lost: Callable[[], None]) -> None:
    """:func:`reuse`, assuming the lease holds; ``lost`` is called if it did not.

    On PostgreSQL the update goes to the server with the transaction's next statement, and
    ``lost`` runs then (it may write: the pipeline is closed by that time); on SQLite at once.
    """

    def check(count: int) -> None:
        if count != 1:
            lost()

    assert job.leased_to is not None  # noqa: S101 - only a continuation reuses a row
    if tx.connection.dialect.name != "postgresql":
        check(1 if reuse(tx, job_id, job) else 0)
        return
    _REUSE.send(tx.connection, _reuse_params(tx, job_id, job), check)


def claim(
    tx: Transaction,
    *,
    worker: str,
    queues: Sequence[str],
    limit: int,
    lease: float,
    holds: Mapping[str, Iterable[str]] | None = None,
) -> list[Job]:
    """Lease up to ``limit`` due jobs of ``queues`` to ``worker``, highest priority first.

    Within a priority, the oldest ``run_at`` first, then the oldest job.

    ``holds`` (workflow name to the versions of it the worker holds) restricts the claim to
    jobs the worker can run: a job for a workflow, or a version of it, that the worker lacks
    stays queued for a worker that has it, untouched (jobs without a workflow, queued before
    versions were recorded, go to anyone). ``None`` claims every job of the queues.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets many workers claim at once without blocking
    each other or taking the same job; SQLite's write lock serialises claims.

    **Flow control.** The claim statement also reports, per job, whether its queue has limits
    (a probe of ``squidmesh_queue_limits``, usually empty, inside the same statement). When no
    claimed job has a concurrency key and no queue has limits, that one statement is the whole
    claim. Otherwise the claim locks the queues' limit rows, then the keys (sorted; see
    :mod:`squidmesh_sdk.store.flow`), counts running jobs with a fresh snapshot, keeps the jobs
    that fit in claim order and puts the others back as they were (queued, same ``run_at`` and
    delivery count), then claims again past them, so that a full key or queue does not hold
    back other eligible jobs.
    """
    rows = _first_batch(tx, worker, queues, limit, lease, holds)
    claimed = [Job.from_row(row) for row in rows]
    if any(job.concurrency_key is not None for job in claimed) or any(
        row["queue_limited"] for row in rows
    ):
        claimed = _claim_limited(tx, claimed, worker, queues, limit, lease, holds)
    return sorted(claimed, key=claim_order)


def claim_order(job: Job) -> tuple[int, datetime, int]:
    """The order claims take jobs in: priority (higher first), ``run_at``, id."""
    return (-job.priority, job.run_at, job.id)


# Passes of a limited claim past jobs that did not fit. Each pass skips the keys and queues
# found full, so a few suffice; a claim that still has room afterwards comes back at once.
_LIMITED_PASSES = 4


def _claim_batch(
    tx: Transaction,
    worker: str,
    queues: Sequence[str],
    limit: int,
    lease: float,
    holds: Mapping[str, Iterable[str]] | None,
    *,
    skip: Sequence[int],
    full_keys: Sequence[str] = (),
    full_queues: Sequence[str] = (),
) -> list[Mapping[Any, Any]]:
    due = (
        sa.select(jobs.c.id)
        .where(jobs.c.status == "queued", jobs.c.queue.in_(list(queues)), jobs.c.run_at <= tx.now)
        .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
        .limit(limit)
    )
    if holds is not None:
        due = due.where(_runnable(holds))
    if skip:
        due = due.where(jobs.c.id.not_in(list(skip)))
    if full_keys:
        due = due.where(
            sa.or_(jobs.c.concurrency_key.is_(None), jobs.c.concurrency_key.not_in(full_keys))
        )
    if full_queues:
        due = due.where(jobs.c.queue.not_in(list(full_queues)))
    if tx.connection.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    limited = (
        sa.exists()
        .where(queue_limits.c.queue == jobs.c.queue)
        .correlate(jobs)
        .label("queue_limited")
    )
    statement = (
        jobs.update()
        .where(jobs.c.id.in_(due.scalar_subquery()))
        .values(
            status="running",
            locked_by=worker,
            locked_until=tx.now + timedelta(seconds=lease),
            deliveries=jobs.c.deliveries + 1,
            updated_at=tx.now,
        )
        .returning(*jobs.c, limited)
    )
    return list(tx.connection.execute(statement).mappings())


def _first_batch(
    tx: Transaction,
    worker: str,
    queues: Sequence[str],
    limit: int,
    lease: float,
    holds: Mapping[str, Iterable[str]] | None,
) -> Sequence[Mapping[Any, Any]]:
    """:func:`_claim_batch` with nothing to skip: the claim's first (usually only) statement.

    Prepared once per set of queues and workflow versions held (a worker's are fixed), since
    building and compiling the statement each time cost more than the database's work.
    """
    pairs = (
        None
        if holds is None
        else tuple(
            sorted((name, version) for name, versions in holds.items() for version in versions)
        )
    )
    key = (tuple(queues), pairs)
    statement = _FIRST_BATCHES.get(key)
    if statement is None:
        statement = Prepared(lambda dialect: _first_batch_statement(dialect, queues, pairs))
        if len(_FIRST_BATCHES) >= _FIRST_BATCHES_KEPT:
            _FIRST_BATCHES.clear()  # workers whose holds keep changing: start over
        _FIRST_BATCHES[key] = statement
    return statement.rows(
        tx.connection,
        {
            "p_now": tx.now,
            "p_limit": limit,
            "p_worker": worker,
            "p_locked_until": tx.now + timedelta(seconds=lease),
        },
    )


_FIRST_BATCHES: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...] | None], Prepared] = {}
_FIRST_BATCHES_KEPT = 64


def _first_batch_statement(
    dialect: str, queues: Sequence[str], pairs: tuple[tuple[str, str], ...] | None
) -> Any:
    # Lists are spelled out as ORs of equalities: a prepared statement has no expanding IN.
    due = (
        sa.select(jobs.c.id)
        .where(
            jobs.c.status == "queued",
            sa.or_(*(jobs.c.queue == queue for queue in queues)),
            jobs.c.run_at <= sa.bindparam("p_now", type_=UTCDateTime),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
    )
    if pairs is not None:
        names = sorted({name for name, _ in pairs})
        held = [
            sa.and_(jobs.c.workflow == name, jobs.c.definition_version == version)
            for name, version in pairs
        ]
        due = due.where(
            sa.or_(
                jobs.c.workflow.is_(None),
                sa.and_(
                    jobs.c.definition_version.is_(None),
                    sa.or_(*(jobs.c.workflow == name for name in names)) if names else sa.false(),
                ),
                *held,
            )
        )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    limited = (
        sa.exists()
        .where(queue_limits.c.queue == jobs.c.queue)
        .correlate(jobs)
        .label("queue_limited")
    )
    return (
        jobs.update()
        .where(jobs.c.id.in_(due.scalar_subquery()))
        .values(
            status="running",
            locked_by=sa.bindparam("p_worker"),
            locked_until=sa.bindparam("p_locked_until", type_=UTCDateTime),
            deliveries=jobs.c.deliveries + 1,
            updated_at=sa.bindparam("p_now", type_=UTCDateTime),
        )
        .returning(*jobs.c, limited)
    )


def _claim_limited(
    tx: Transaction,
    claimed: list[Job],
    worker: str,
    queues: Sequence[str],
    limit: int,
    lease: float,
    holds: Mapping[str, Iterable[str]] | None,
) -> list[Job]:
    """Keep the claimed jobs that fit their key's and queue's limits; claim more past the rest.

    Lock order, the same in every claim: the queues' limit rows (by name), then the keys of the
    first batch (sorted, waiting); keys met in later passes are only tried (see
    :func:`flow.try_lock_key`). Counts are read after the locks, each statement with a fresh
    snapshot (READ COMMITTED), so they include what any claim that held the locks before
    committed. A count read after one of this claim's own statements includes the leases that
    statement just took, which are subtracted: the jobs kept are then charged one by one.
    """
    limits = flow.lock_queue_limits(tx, sorted(set(queues)))
    first_keys = {job.concurrency_key for job in claimed if job.concurrency_key is not None}
    flow.lock_keys(tx, first_keys)
    locked: set[str] = set(first_keys)
    busy: set[str] = set()  # keys another claim is locking now: this one leaves them
    key_limits: dict[str, int] = {}
    running_keys: dict[str, int] = {}
    counted_queues = [q for q, lim in limits.items() if lim.concurrency is not None]
    found_queues = flow.running_per_queue(tx.connection, counted_queues)
    running_queues = {queue: found_queues.get(queue, 0) for queue in counted_queues}
    for job in claimed:
        if job.queue in running_queues:
            running_queues[job.queue] -= 1
    tokens = {q: lim.tokens_at(tx.now) for q, lim in limits.items() if lim.rate is not None}
    start_tokens = dict(tokens)
    kept: list[Job] = []
    put_back: list[Job] = []
    batch, requested = claimed, limit
    for _ in range(_LIMITED_PASSES):
        batch_keys = {job.concurrency_key for job in batch if job.concurrency_key is not None}
        for key in sorted(batch_keys - locked - busy):
            if flow.try_lock_key(tx, key):
                locked.add(key)
            else:
                busy.add(key)
        fresh = sorted(batch_keys - running_keys.keys() - busy)
        found = flow.running_per_key(tx.connection, fresh)
        for key in fresh:
            mine = sum(job.concurrency_key == key for job in batch)
            running_keys[key] = found.get(key, 0) - mine
        for job in sorted(batch, key=claim_order):
            if job.concurrency_key is not None:
                key_limits[job.concurrency_key] = job.concurrency_limit or 1
            if _fits(job, limits, running_keys, running_queues, tokens, busy):
                kept.append(job)
                _charge(job, running_keys, running_queues, tokens)
            else:
                put_back.append(job)
        room = limit - len(kept)
        if room <= 0 or len(batch) < requested:
            break  # full, or nothing more of the queues is eligible
        full_keys = sorted(
            busy | {key for key, count in running_keys.items() if count >= key_limits[key]}
        )
        full_queues = sorted(
            queue
            for queue, lim in limits.items()
            if (lim.concurrency is not None and running_queues.get(queue, 0) >= lim.concurrency)
            or tokens.get(queue, float("inf")) < 1
        )
        if set(full_queues) >= set(queues):
            break
        requested = room
        rows = _claim_batch(
            tx,
            worker,
            queues,
            room,
            lease,
            holds,
            skip=[job.id for job in put_back],
            full_keys=full_keys,
            full_queues=full_queues,
        )
        batch = [Job.from_row(row) for row in rows]
        if not batch:
            break
    for queue, left in tokens.items():
        if left != start_tokens[queue]:
            flow.spend(tx, queue, left)
    if put_back:
        _put_back(tx, put_back)
    return kept


def _fits(
    job: Job,
    limits: Mapping[str, flow.QueueLimits],
    running_keys: Mapping[str, int],
    running_queues: Mapping[str, int],
    tokens: Mapping[str, float],
    busy: set[str],
) -> bool:
    key = job.concurrency_key
    if key is not None and (
        key in busy or running_keys.get(key, 0) >= (job.concurrency_limit or 1)
    ):
        return False
    queue_limit = limits.get(job.queue)
    if queue_limit is None:
        return True
    if queue_limit.concurrency is not None and (
        running_queues.get(job.queue, 0) >= queue_limit.concurrency
    ):
        return False
    return queue_limit.rate is None or tokens.get(job.queue, 0.0) >= 1


def _charge(
    job: Job,
    running_keys: dict[str, int],
    running_queues: dict[str, int],
    tokens: dict[str, float],
) -> None:
    if job.concurrency_key is not None:
        running_keys[job.concurrency_key] = running_keys.get(job.concurrency_key, 0) + 1
    if job.queue in running_queues:
        running_queues[job.queue] += 1
    if job.queue in tokens:
        tokens[job.queue] -= 1


def _put_back(tx: Transaction, put_back: Sequence[Job]) -> None:
    """Undo this claim's lease of jobs that did not fit: queued again, as they were.

    Their row locks stay with this transaction until it commits, so no other claim saw them
    leased; ``updated_at`` is the one column that keeps this claim's time.
    """
    tx.connection.execute(
        jobs.update()
        .where(jobs.c.id == sa.bindparam("p_id"), jobs.c.status == "running")
        .values(
            status="queued",
            locked_by=None,
            locked_until=None,
            deliveries=sa.bindparam("p_deliveries"),
        ),
        [{"p_id": job.id, "p_deliveries": job.deliveries - 1} for job in put_back],
    )


def _runnable(holds: Mapping[str, Iterable[str]]) -> sa.ColumnElement[bool]:
    pairs = [(name, version) for name, versions in holds.items() for version in versions]
    return sa.or_(
        jobs.c.workflow.is_(None),
        sa.and_(jobs.c.definition_version.is_(None), jobs.c.workflow.in_(list(holds))),
        sa.tuple_(jobs.c.workflow, jobs.c.definition_version).in_(pairs),
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
    queued = _unclaimed_step_jobs(tx, run_id, jobs.c.status == "queued")
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
    """Heartbeat: push the leases of ``worker``'s running jobs ``lease`` seconds ahead."""
    ids = list(job_ids)
    if not ids:
        return 0
    result = tx.connection.execute(
        jobs.update()
        .where(jobs.c.id.in_(ids), jobs.c.locked_by == worker, jobs.c.status == "running")
        .values(locked_until=tx.now + timedelta(seconds=lease), updated_at=tx.now)
    )
    return result.rowcount


def rescue_expired(tx: Transaction) -> list[Job]:
    """Queue again every running job whose lease ran out; return them."""
    statement = (
        jobs.update()
        .where(jobs.c.status == "running", jobs.c.locked_until < tx.now)
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
            jobs.c.status == "running",
            jobs.c.locked_until >= now,
        )
        .limit(1)
    )
    return found is not None


def list_jobs(
    connection: Connection, *, run_id: str | None = None, status: str | None = None
) -> list[Job]:
    """Jobs in id order, optionally of one run and / or in one status."""
    query = sa.select(jobs).order_by(jobs.c.id)
    if run_id is not None:
        query = query.where(jobs.c.run_id == as_uuid(run_id))
    if status is not None:
        query = query.where(jobs.c.status == status)
    return [Job.from_row(row) for row in connection.execute(query).mappings()]


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
            "queued": sa.and_(jobs.c.status == "queued", jobs.c.run_at <= now),
            "delayed": sa.and_(jobs.c.status == "queued", jobs.c.run_at > now),
            "running": jobs.c.status == "running",
            "failed": jobs.c.status == "failed",
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


def get_job(connection: Connection, job_id: int) -> Job | None:
    """The job with this id, if it is still there (a settled job is deleted)."""
    row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return Job.from_row(row) if row is not None else None


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
    due = sa.and_(jobs.c.status == "queued", jobs.c.run_at <= now)
    counts = connection.execute(
        sa.select(
            jobs.c.queue,
            sa.func.sum(sa.case((due, 1), else_=0)),
            sa.func.sum(
                sa.case((sa.and_(jobs.c.status == "queued", jobs.c.run_at > now), 1), else_=0)
            ),
            sa.func.sum(sa.case((jobs.c.status == "running", 1), else_=0)),
            sa.func.sum(sa.case((jobs.c.status == "failed", 1), else_=0)),
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


_INSERT = Prepared(
    lambda _: (
        jobs.insert()
        .values({column.key: sa.bindparam(column.key) for column in jobs.c if column.key != "id"})
        .returning(jobs.c.id)
    )
)
_REUSE = Prepared(
    lambda _: (
        jobs.update()
        .where(
            jobs.c.id == sa.bindparam("p_id"),
            jobs.c.locked_by == sa.bindparam("p_worker"),
            jobs.c.status == "running",
        )
        .values(
            {
                **{
                    name: sa.bindparam(name)
                    for name in (
                        "queue",
                        "kind",
                        "payload",
                        "run_id",
                        "step",
                        "workflow",
                        "definition_version",
                        "locked_until",
                        "priority",
                        "concurrency_key",
                        "concurrency_limit",
                    )
                },
                "status": "running",
                "run_at": sa.bindparam("p_now"),
                "deliveries": 1,
                "rescues": 0,
                "last_error": sa.null(),
                "inserted_at": sa.bindparam("p_now"),
                "updated_at": sa.bindparam("p_now"),
            }
        )
    )
)
_COMPLETE = Prepared(
    lambda _: jobs.delete().where(
        jobs.c.id == sa.bindparam("p_id"),
        jobs.c.locked_by == sa.bindparam("p_worker"),
        jobs.c.status == "running",
    )
)
