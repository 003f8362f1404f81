"""Flow control for the database queue: queue limits, their token buckets, key locks and counts.

An operator's limits on a queue are a row of ``squidmesh_queue_limits``: at most
``concurrency`` running jobs, at most ``rate_count`` claims per ``rate_period`` seconds. The
rate is a token bucket of ``rate_count`` tokens (the burst) refilled at ``rate_count /
rate_period`` tokens a second; each claim spends one. Its state (``tokens`` left at
``refilled_at``) is written by the claim transaction that spends it, under the row's lock.

The claim (:func:`squidmesh_sdk.store.claims.claim`) uses the rest of this module on its
limited path: :func:`lock_queue_limits` then :func:`lock_keys` (always in that order, each
sorted, so claims never deadlock), then :func:`running_per_key` / :func:`running_per_queue`,
which read with a fresh snapshot once the locks are held.

Those statements, and a rate bucket's :func:`spend`, run in every claim of a keyed or limited
job, so they are prepared (:class:`~squidmesh_sdk.store.prepared.Prepared`): built and
compiled once, not at every claim, which had cost a keyed 5-step run a fifth more Python than
an unkeyed one. A list of queues or keys is bound one value per parameter (a prepared
statement has no expanding ``IN``), padded to one of a few lengths (:data:`_LENGTHS`). The
counts and the key locks of a longer list take several statements (lock ids are integers:
statement after statement, one ascending order); the queues' limit rows are always locked by
one statement, so that the database orders all of them by its own collation, which Python's
sort of their names need not follow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.definition.flow import RateLimit
from squidmesh_sdk.store.database import Transaction, upsert
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.schema import job_status_is, jobs, queue_limits
from squidmesh_sdk.store.types import UTCDateTime

__all__ = [
    "QueueLimits",
    "clear_limits",
    "key_lock_id",
    "list_limits",
    "lock_keys",
    "lock_queue_limits",
    "refill",
    "running_per_key",
    "running_per_queue",
    "set_limits",
    "spend",
    "try_lock_key",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    """An operator's limits on one queue, with the state of its rate bucket.

    Attributes:
        queue: The queue.
        concurrency: Most running jobs of the queue at once (``None``: no limit).
        rate: Most claims per period (``None``: no limit).
        tokens: Claims the bucket allowed at ``refilled_at`` (see :func:`refill` for now).
        refilled_at: When ``tokens`` was computed.
        updated_at: When an operator last set the limits.
    """

    queue: str
    concurrency: int | None
    rate: RateLimit | None
    tokens: float | None
    refilled_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> QueueLimits:
        """Build from a ``squidmesh_queue_limits`` row."""
        count, period = row["rate_count"], row["rate_period"]
        rate = (
            RateLimit(int(count), per=timedelta(seconds=float(period)))
            if count is not None and period is not None
            else None
        )
        return cls(
            queue=str(row["queue"]),
            concurrency=row["concurrency"],
            rate=rate,
            tokens=row["tokens"],
            refilled_at=row["refilled_at"],
            updated_at=row["updated_at"],
        )

    def tokens_at(self, now: datetime) -> float:
        """Claims the rate bucket allows at ``now`` (``inf`` without a rate limit)."""
        if self.rate is None:
            return float("inf")
        return refill(self.rate, self.tokens, self.refilled_at, now)

    def next_token_at(self, now: datetime) -> datetime:
        """When the bucket next holds a whole token (``now`` if it does already)."""
        if self.rate is None:
            return now
        tokens = self.tokens_at(now)
        if tokens >= 1:
            return now
        per_token = self.rate.period_seconds / self.rate.count
        return now + timedelta(seconds=(1 - tokens) * per_token)


def refill(
    rate: RateLimit, tokens: float | None, refilled_at: datetime | None, now: datetime
) -> float:
    """The bucket's tokens at ``now``: what was left, plus what accrued since, capped at ``count``.

    A bucket never written (``tokens`` ``None``) is full. A clock that went back accrues
    nothing rather than taking tokens away.
    """
    if tokens is None or refilled_at is None:
        return float(rate.count)
    elapsed = max((now - refilled_at).total_seconds(), 0.0)
    return min(float(rate.count), tokens + elapsed * rate.count / rate.period_seconds)


def spend(tx: Transaction, queue: str, tokens: float) -> None:
    """Store the bucket of ``queue`` with ``tokens`` left now (under the claim's row lock).

    The bucket's time never goes back: a transaction stamped before the bucket's last write
    (one that waited for the row's lock, or claims at the end of a longer transaction) was
    credited nothing since that write (see :func:`refill`), and writing its older time would
    credit that interval again to the next claim.
    """
    _SPEND.execute(tx.connection, {"p_queue": queue, "p_tokens": tokens, "p_now": tx.now})


def _spend_statement(_dialect: str) -> Any:
    now = sa.bindparam("p_now", type_=UTCDateTime)
    return (
        queue_limits.update()
        .where(queue_limits.c.queue == sa.bindparam("p_queue", type_=queue_limits.c.queue.type))
        .values(
            tokens=sa.bindparam("p_tokens", type_=queue_limits.c.tokens.type),
            refilled_at=sa.case(
                (queue_limits.c.refilled_at > now, queue_limits.c.refilled_at), else_=now
            ),
        )
    )


_SPEND = Prepared(_spend_statement)


def set_limits(
    tx: Transaction, queue: str, *, concurrency: int | None, rate: RateLimit | None
) -> QueueLimits:
    """Set (replace) the limits of ``queue``; both ``None`` clears them.

    A rate that changes starts with a full bucket; an unchanged rate keeps its bucket, so
    setting the same limits again does not grant a new burst.
    """
    current = _select(tx.connection, queue, for_update=True)
    if concurrency is None and rate is None:
        clear_limits(tx, queue)
        return QueueLimits(
            queue=queue,
            concurrency=None,
            rate=None,
            tokens=None,
            refilled_at=None,
            updated_at=tx.now,
        )
    keep_bucket = current is not None and current.rate == rate
    values = {
        "concurrency": concurrency,
        "rate_count": rate.count if rate is not None else None,
        "rate_period": rate.period_seconds if rate is not None else None,
        "tokens": current.tokens if keep_bucket and current is not None else None,
        "refilled_at": current.refilled_at if keep_bucket and current is not None else None,
        "updated_at": tx.now,
    }
    if current is None:
        # An upsert: two first settings of the same queue racing end with the later one's.
        insert = upsert(tx.connection.dialect.name, queue_limits).values(queue=queue, **values)
        tx.connection.execute(
            insert.on_conflict_do_update(index_elements=[queue_limits.c.queue], set_=values)
        )
    else:
        tx.connection.execute(
            queue_limits.update().where(queue_limits.c.queue == queue).values(**values)
        )
    found = _select(tx.connection, queue, for_update=False)
    assert found is not None  # noqa: S101 - written just above, in this transaction
    return found


def clear_limits(tx: Transaction, queue: str) -> bool:
    """Remove every limit of ``queue``; ``False`` if it had none."""
    result = tx.connection.execute(queue_limits.delete().where(queue_limits.c.queue == queue))
    return result.rowcount == 1


def list_limits(connection: Connection, queues: Iterable[str] | None = None) -> list[QueueLimits]:
    """The limits of every queue that has some (of ``queues`` only, if given), by name."""
    query = sa.select(queue_limits).order_by(queue_limits.c.queue)
    if queues is not None:
        query = query.where(queue_limits.c.queue.in_(list(queues)))
    return [QueueLimits.from_row(row) for row in connection.execute(query).mappings()]


def lock_queue_limits(tx: Transaction, queues: Sequence[str]) -> dict[str, QueueLimits]:
    """Read and lock the limits of ``queues`` (the first lock of a limited claim).

    One statement, whatever their number: the database locks the rows in its own order of
    their names (its collation), the same in every claim.

    ``FOR UPDATE`` on PostgreSQL: claims of the same limited queues take turns from here, and
    each counts the running jobs after the previous one committed. SQLite's write lock
    already serialises claims.
    """
    found: dict[str, QueueLimits] = {}
    for length, params in _bound(sorted(set(queues)), whole=True):
        for row in _LOCK_LIMITS[length].rows(tx.connection, params):
            found[row["queue"]] = QueueLimits.from_row(row)
    return found


def key_lock_id(key: str) -> int:
    """The advisory lock id of a concurrency key: a signed 64-bit hash of it.

    Two keys with the same hash only take turns needlessly; the count stays per key.
    """
    digest = hashlib.blake2b(f"squidmesh-concurrency:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_keys(tx: Transaction, keys: Iterable[str]) -> None:
    """Take the transaction-scoped advisory locks of ``keys``, sorted (PostgreSQL only).

    Held until the claim commits: another claim of the same key waits here, then counts the
    jobs this one leased. Sorted lock ids and a single statement (its target list is evaluated
    left to right) keep every claim's order the same, so two claims never wait on each other
    in a cycle. (More keys than one statement binds take several statements, each with ids
    above the one before; the padding repeats the last id, and a session that holds an
    advisory lock takes it again at once.)
    """
    if tx.connection.dialect.name != "postgresql":
        return
    for length, params in _bound(sorted({key_lock_id(key) for key in keys})):
        _LOCK_KEYS[length].execute(tx.connection, params)


def try_lock_key(tx: Transaction, key: str) -> bool:
    """Take the advisory lock of ``key`` if it is free (PostgreSQL; SQLite: always ``True``).

    For keys met after the first sorted batch: waiting for them could close a cycle with a
    claim that holds them and waits for one of ours, so a claim skips a busy key instead.
    """
    if tx.connection.dialect.name != "postgresql":
        return True
    row = _TRY_LOCK_KEY.first(tx.connection, {"v0": key_lock_id(key)})
    return row is not None and bool(row["locked"])


def running_per_key(connection: Connection, keys: Iterable[str]) -> dict[str, int]:
    """How many ``running`` jobs hold each of ``keys`` (leases not yet rescued count too)."""
    return _running(_RUNNING_PER_KEY, connection, keys)


def running_per_queue(connection: Connection, queues: Iterable[str]) -> dict[str, int]:
    """How many ``running`` jobs each of ``queues`` has."""
    return _running(_RUNNING_PER_QUEUE, connection, queues)


def _running(
    statements: _ByLength, connection: Connection, values: Iterable[str]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for length, params in _bound(sorted(set(values))):
        for row in statements[length].rows(connection, params):
            counts[str(row["value"])] = int(row["running"])
    return counts


_LENGTHS = (1, 2, 4, 8, 16, 32, 48)
"""The list lengths the statements below are prepared for (parameters ``v0``, ``v1``...).

A list is padded to the next length with copies of its last value, which change no result
(``IN`` ignores them, and an advisory lock held is taken again at once): a few statements
serve every claim, where one per length would grow with the keys a claim meets. The longest
stays within the 50 parameters psycopg caches its parse of a statement for.
"""


def _bound(values: Sequence[Any], *, whole: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """``values`` (sorted) as lists of a prepared length: each list's length and parameters.

    A list longer than the longest length is cut into lists of that length, or with ``whole``
    bound as it is, in one statement of its own length.
    """
    longest = _LENGTHS[-1]
    if whole:
        parts = [values] if values else []
    else:
        parts = [values[start : start + longest] for start in range(0, len(values), longest)]
    for part in parts:
        length = next((length for length in _LENGTHS if length >= len(part)), len(part))
        padded = [*part, *[part[-1]] * (length - len(part))]
        yield length, {f"v{index}": value for index, value in enumerate(padded)}


class _ByLength:
    """A statement over a list, ``build(dialect, params)``, prepared once per list length."""

    __slots__ = ("_build", "_prepared", "_value_type")

    def __init__(
        self, build: Callable[[str, list[Any]], Any], value_type: sa.types.TypeEngine[Any]
    ) -> None:
        self._build = build
        self._value_type = value_type
        self._prepared: dict[int, Prepared] = {}

    def __getitem__(self, length: int) -> Prepared:
        prepared = self._prepared.get(length)
        if prepared is None:
            params = [sa.bindparam(f"v{index}", type_=self._value_type) for index in range(length)]
            build = self._build
            # Two threads may both make one: the first kept is used by both from then on.
            prepared = self._prepared.setdefault(
                length, Prepared(lambda dialect: build(dialect, params))
            )
        return prepared


def _lock_limits_statement(dialect: str, params: list[Any]) -> Any:
    query = (
        sa.select(queue_limits)
        .where(queue_limits.c.queue.in_(params))
        .order_by(queue_limits.c.queue)
    )
    return query.with_for_update() if dialect == "postgresql" else query


def _lock_keys_statement(_dialect: str, params: list[Any]) -> Any:
    return sa.select(
        *(
            sa.func.pg_advisory_xact_lock(param).label(f"l{index}")
            for index, param in enumerate(params)
        )
    )


def _running_statement(column: sa.Column[str]) -> Callable[[str, list[Any]], Any]:
    def build(_dialect: str, params: list[Any]) -> Any:
        return (
            sa.select(column.label("value"), sa.func.count().label("running"))
            .where(job_status_is("running"), column.in_(params))
            .group_by(column)
        )

    return build


_LOCK_LIMITS = _ByLength(_lock_limits_statement, queue_limits.c.queue.type)
_LOCK_KEYS = _ByLength(_lock_keys_statement, sa.BigInteger())
_RUNNING_PER_KEY = _ByLength(
    _running_statement(jobs.c.concurrency_key), jobs.c.concurrency_key.type
)
_RUNNING_PER_QUEUE = _ByLength(_running_statement(jobs.c.queue), jobs.c.queue.type)
_TRY_LOCK_KEY = Prepared(
    lambda _dialect: sa.select(
        sa.func.pg_try_advisory_xact_lock(sa.bindparam("v0", type_=sa.BigInteger)).label("locked")
    )
)


def _select(connection: Connection, queue: str, *, for_update: bool) -> QueueLimits | None:
    query = sa.select(queue_limits).where(queue_limits.c.queue == queue)
    if for_update and connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = connection.execute(query).mappings().first()
    return QueueLimits.from_row(row) if row is not None else None
