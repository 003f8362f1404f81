"""Claiming due jobs of the built-in database queue: which jobs a worker leases, in what order.

A claim leases up to ``limit`` due jobs of a worker's queues, highest priority first, then the
oldest ``run_at``, then the oldest job, skipping jobs for workflow versions the worker does not
hold. On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets many workers claim at once without blocking
each other or taking the same job; SQLite's write lock serialises claims. Flow control (per-key
and per-queue concurrency, queue rate limits; :mod:`squidmesh_sdk.store.flow`) is enforced here,
exactly under concurrent workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from squidmesh_sdk.store import flow
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.jobs import Job
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.schema import job_status_is, jobs, queue_limits
from squidmesh_sdk.store.types import UTCDateTime

__all__ = ["claim", "claim_order"]


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
    rows = _claim_batch(tx, worker, queues, limit, lease, holds)
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
    skip: Sequence[int] = (),
    full_keys: Sequence[str] = (),
    full_queues: Sequence[str] = (),
) -> Sequence[Mapping[Any, Any]]:
    """Lease up to ``limit`` due jobs, skipping ``skip`` and jobs of full keys and queues.

    The first batch of a claim (nothing to skip, the usual and often only one) runs a
    statement prepared once per set of queues and workflow versions held (a worker's are
    fixed): building and compiling it each time cost more than the database's work.
    """
    pairs = _held(holds)
    params = {
        "p_now": tx.now,
        "p_limit": limit,
        "p_worker": worker,
        "p_locked_until": tx.now + timedelta(seconds=lease),
    }
    if skip or full_keys or full_queues:
        statement = _batch_statement(
            tx.connection.dialect.name,
            queues,
            pairs,
            skip=skip,
            full_keys=full_keys,
            full_queues=full_queues,
        )
        return list(tx.connection.execute(statement, params).mappings())
    key = (tuple(queues), pairs)
    prepared = _FIRST_BATCHES.get(key)
    if prepared is None:
        prepared = Prepared(lambda dialect: _batch_statement(dialect, queues, pairs))
        if len(_FIRST_BATCHES) >= _FIRST_BATCHES_KEPT:
            _FIRST_BATCHES.clear()  # workers whose holds keep changing: start over
        _FIRST_BATCHES[key] = prepared
    return prepared.rows(tx.connection, params)


_FIRST_BATCHES: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...] | None], Prepared] = {}
_FIRST_BATCHES_KEPT = 64


def _held(holds: Mapping[str, Iterable[str]] | None) -> tuple[tuple[str, str], ...] | None:
    """The (workflow, version) pairs a worker holds, sorted (``None``: it takes every job)."""
    if holds is None:
        return None
    return tuple(
        sorted((name, version) for name, versions in holds.items() for version in versions)
    )


def _batch_statement(
    dialect: str,
    queues: Sequence[str],
    pairs: tuple[tuple[str, str], ...] | None,
    *,
    skip: Sequence[int] = (),
    full_keys: Sequence[str] = (),
    full_queues: Sequence[str] = (),
) -> Any:
    """The claim's ``UPDATE ... RETURNING``, its values bound at execution (``p_*``).

    ``p_now``, ``p_limit``, ``p_worker`` and ``p_locked_until`` are given when it runs. A job
    for a workflow, or a version of it, that the worker lacks (``pairs``) stays queued for a
    worker that has it; jobs without a workflow (queued before versions were recorded) go to
    anyone. Queues and versions are spelled out as ORs of equalities: a prepared statement has
    no expanding ``IN``.
    """
    due = (
        sa.select(jobs.c.id)
        .where(
            job_status_is("queued"),
            sa.or_(*(jobs.c.queue == queue for queue in queues)),
            jobs.c.run_at <= sa.bindparam("p_now", type_=UTCDateTime),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
    )
    if pairs is not None:
        names = sorted({name for name, _ in pairs})
        due = due.where(
            sa.or_(
                jobs.c.workflow.is_(None),
                sa.and_(
                    jobs.c.definition_version.is_(None),
                    sa.or_(*(jobs.c.workflow == name for name in names)) if names else sa.false(),
                ),
                *(
                    sa.and_(jobs.c.workflow == name, jobs.c.definition_version == version)
                    for name, version in pairs
                ),
            )
        )
    if skip:
        due = due.where(jobs.c.id.not_in(list(skip)))
    if full_keys:
        due = due.where(
            sa.or_(jobs.c.concurrency_key.is_(None), jobs.c.concurrency_key.not_in(full_keys))
        )
    if full_queues:
        due = due.where(jobs.c.queue.not_in(list(full_queues)))
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    # The job's queue is named with its table: SQLite's RETURNING writes columns unqualified,
    # and an unqualified ``queue`` in the probe is the limits' own (any limit made every job
    # of every queue look limited).
    claimed_queue = sa.literal_column(f"{jobs.name}.{jobs.c.queue.name}", jobs.c.queue.type)
    limited = sa.exists().where(queue_limits.c.queue == claimed_queue).label("queue_limited")
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
    limits = flow.lock_queue_limits(tx, queues)
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
