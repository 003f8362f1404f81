"""The database queue's depth and oldest-job age as OpenTelemetry observable gauges.

``squidmesh.queue.depth`` (jobs per queue and state) and ``squidmesh.queue.oldest_age``
(seconds the oldest due job of a queue has waited) are observed whenever the host's metric
reader collects, by a short read of ``squidmesh_jobs``
(:func:`~squidmesh_sdk.store.job_admin.queue_stats`) in the reader's thread: a worker's claims
never wait for it.

A :class:`~squidmesh_sdk.executors.worker.Worker` registers its queues while it runs
(:func:`register` / :func:`unregister`); a queue is reported once per database however many
workers of the process take from it, and nothing is reported once the last of them stops. A
read that fails is logged and reports nothing for that collection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa
from opentelemetry.metrics import CallbackOptions, Observation

from squidmesh_sdk import telemetry
from squidmesh_sdk.clock import Clock
from squidmesh_sdk.store import job_admin
from squidmesh_sdk.store.database import Database

__all__ = ["DEPTH", "OLDEST_AGE", "QUEUE", "STATE", "register", "unregister"]

logger = logging.getLogger("squidmesh_sdk.worker")

DEPTH = "squidmesh.queue.depth"
OLDEST_AGE = "squidmesh.queue.oldest_age"
QUEUE = "squidmesh.queue"
STATE = "squidmesh.job.state"

READ_TIMEOUT_MS = 2000
"""PostgreSQL's ``statement_timeout`` for the read: a slow count gives up, it never piles up."""

_FRESH_SECONDS = 0.5
"""One collection observes both gauges: they share one read made this recently."""


class _Registrant(Protocol):
    """What a worker shows of itself here."""

    @property
    def queues(self) -> Sequence[str]: ...


@dataclass(slots=True)
class _Source:
    """One database some running workers take jobs from."""

    database: Database
    clock: Clock
    workers: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def queues(self) -> set[str]:
        return {queue for queues in self.workers.values() for queue in queues}


_lock = threading.Lock()
_sources: dict[str, _Source] = {}  # by database URL: two clients of one database count once
_cache: list[tuple[float, list[tuple[float, job_admin.QueueStats]]]] = []


def register(worker: _Registrant, database: Database, clock: Clock) -> None:
    """Report ``worker``'s queues of ``database`` until :func:`unregister` (``worker`` runs)."""
    key = _key(database)
    with _lock:
        source = _sources.setdefault(key, _Source(database=database, clock=clock))
        source.workers[id(worker)] = tuple(worker.queues)
        _cache.clear()


def unregister(worker: _Registrant) -> None:
    """Stop reporting ``worker``'s queues (those another running worker takes stay)."""
    with _lock:
        for key, source in list(_sources.items()):
            source.workers.pop(id(worker), None)
            if not source.workers:
                del _sources[key]
        _cache.clear()


def _key(database: Database) -> str:
    return database.engine.url.render_as_string(hide_password=True)


def _stats() -> list[tuple[float, job_admin.QueueStats]]:
    """Each registered queue's wait and stats (an empty queue: zeros).

    Read at most every half second; a database whose read fails is logged and left out.
    """
    with _lock:
        if _cache and time.monotonic() - _cache[0][0] < _FRESH_SECONDS:
            return _cache[0][1]
        sources = [(key, source, source.queues()) for key, source in _sources.items()]
    observed: list[tuple[float, job_admin.QueueStats]] = []
    for key, source, queues in sources:
        try:
            observed.extend(_read(source, queues))
        except Exception as exc:  # noqa: BLE001 - a metrics read must never fail the reader
            logger.warning(
                "queue metrics read failed",
                extra={
                    "database": key,
                    "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "error_message": str(exc),
                },
            )
    with _lock:
        _cache[:] = [(time.monotonic(), observed)]
    return observed


def _read(source: _Source, queues: set[str]) -> list[tuple[float, job_admin.QueueStats]]:
    now = source.clock.now()
    with source.database.read() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.select(sa.func.set_config("statement_timeout", str(READ_TIMEOUT_MS), True))
            )
        found = {stats.queue: stats for stats in job_admin.queue_stats(connection, now)}
    observed = []
    for queue in sorted(queues):
        stats = found.get(queue) or job_admin.QueueStats(
            queue=queue, queued=0, delayed=0, running=0, failed=0, oldest_due_at=None
        )
        age = (now - stats.oldest_due_at).total_seconds() if stats.oldest_due_at else 0.0
        observed.append((max(age, 0.0), stats))
    return observed


def _depth(_options: CallbackOptions) -> Iterable[Observation]:
    for _age, stats in _stats():
        for state in job_admin.JOB_STATES:
            yield Observation(getattr(stats, state), {QUEUE: stats.queue, STATE: state})


def _oldest_age(_options: CallbackOptions) -> Iterable[Observation]:
    for age, stats in _stats():
        yield Observation(age, {QUEUE: stats.queue})


telemetry.meter.create_observable_gauge(
    DEPTH,
    callbacks=[_depth],
    unit="{job}",
    description="Jobs of the database queue per queue and state (queued, delayed, running, failed)",
)
telemetry.meter.create_observable_gauge(
    OLDEST_AGE,
    callbacks=[_oldest_age],
    unit="s",
    description="Seconds the oldest due job of a database queue has waited (0: none due)",
)
