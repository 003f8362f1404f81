"""Waking idle workers at once on PostgreSQL: ``LISTEN`` for the queue's ``NOTIFY``.

A job insert sends ``NOTIFY squidmesh_jobs, '<queue>'`` (delivered on commit); a worker that
takes jobs of that queue is woken instead of waiting for its next poll. Notifications may be
lost (a reconnect): polling stays the fallback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from squidmesh_sdk.executors.database import NOTIFY_CHANNEL
from squidmesh_sdk.store.database import Database

__all__ = ["QueueListener"]


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
        url = database.engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
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
        import psycopg  # only PostgreSQL deployments have it

        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = 0.1
                    while not self._stopping.is_set():
                        for notify in connection.notifies(timeout=0.5, stop_after=1):
                            if notify.payload in self._queues:
                                self._wake.set()
            except psycopg.Error:
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
