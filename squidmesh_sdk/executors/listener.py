"""Waking idle workers at once on PostgreSQL: ``LISTEN`` for the queue's ``NOTIFY``.

A job insert sends ``NOTIFY squidmesh_jobs, '<queue>'`` (delivered on commit); a worker that
takes jobs of that queue is woken instead of waiting for its next poll. Notifications may be
lost (a reconnect): polling stays the fallback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from squidmesh_sdk.executors.database import NOTIFY_CHANNEL
from squidmesh_sdk.store.database import Database
from squidmesh_sdk.store.listening import listening_connection, loss_level

__all__ = ["QueueListener"]

logger = logging.getLogger("squidmesh_sdk.worker")


class QueueListener:
    """A daemon thread that sets ``wake`` when work is committed to one of ``queues``.

    Args:
        database: A PostgreSQL database (psycopg 3).
        queues: The queues whose notifications wake.
        wake: Set on each notification for one of them.
        stopping: Set when the listener should end (it reconnects with backoff until then).
    """

    def __init__(
        self,
        database: Database,
        queues: Iterable[str],
        wake: threading.Event,
        stopping: threading.Event,
    ) -> None:
        self._database = database
        self._queues = frozenset(queues)
        self._wake = wake
        self._stopping = stopping
        self._thread = threading.Thread(target=self._listen, name="squidmesh-listen", daemon=True)

    def start(self) -> None:
        """Start listening."""
        self._thread.start()

    def join(self) -> None:
        """Wait for the thread to end (after ``stopping`` is set)."""
        self._thread.join()

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with listening_connection(self._database) as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = 0.1
                    while not self._stopping.is_set():
                        for notify in connection.notifies(timeout=0.5, stop_after=1):
                            if notify.payload in self._queues:
                                self._wake.set()
            except Exception as exc:  # noqa: BLE001 - the worker must not lose its wake-ups
                # Polling goes on meanwhile (every poll_interval): slower, nothing stranded.
                logger.log(
                    loss_level(exc),
                    "worker's queue listener lost its database connection; polling meanwhile",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in": backoff},
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
