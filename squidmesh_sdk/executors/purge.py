"""The periodic purge workers run when ``purge_after`` is set: one worker at a time.

Workers take turns through the ``squidmesh_maintenance`` table: a worker whose turn it is
purges, and renews its turn after every batch, so a purge longer than the interval stays alone;
the others find the turn taken and do nothing. It runs on a thread of its own, so a long purge
never holds up claims.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from squidmesh_sdk.executors.periodic import PeriodicThread
from squidmesh_sdk.runtime import retention
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.store import retention as retention_store

__all__ = ["PURGE_TASK", "PeriodicPurge"]

logger = logging.getLogger("squidmesh_sdk.worker")

PURGE_TASK = "purge"
"""The ``squidmesh_maintenance`` task workers take turns at when ``purge_after`` is set."""


class PeriodicPurge:
    """Purges finished runs older than ``older_than`` once per ``interval``, across workers.

    Args:
        runtime: The worker's runtime.
        worker: The worker's name, for the log.
        older_than: How long after its last change a finished run is kept.
        interval: Seconds between two purges, across all workers.
        stopping: Whether the worker is stopping (a purge then stops between batches).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        worker: str,
        older_than: timedelta,
        interval: float,
        stopping: Callable[[], bool],
    ) -> None:
        self.runtime = runtime
        self.worker = worker
        self.older_than = older_than
        self.interval = interval
        self._stopping = stopping
        # Looks for its turn a few times per interval: a turn one worker misses, another takes.
        self._thread = PeriodicThread("squidmesh-purge", self.tick, min(interval / 4, 60.0))

    def start(self) -> None:
        """Start the purge thread."""
        self._thread.start()

    def stop(self, timeout: float | None) -> None:
        """Stop the purge thread (a purge under way stops after its current batch)."""
        self._thread.stop(timeout)

    def tick(self) -> None:
        """Purge old finished runs if it is this worker's turn (one pass of the thread)."""
        if self._stopping():
            return
        every = timedelta(seconds=self.interval)
        with self.runtime.transaction() as tx:
            taken = retention_store.take_turn(tx, PURGE_TASK, every)
        if taken is None:
            return  # another worker purged less than an interval ago, or is purging now
        turn = [taken]

        def keep_going() -> bool:
            # Hold the turn batch by batch, so a purge longer than the interval stays alone.
            if self._stopping():
                return False
            with self.runtime.transaction() as tx:
                kept = retention_store.extend_turn(tx, PURGE_TASK, turn[0])
            if kept is None:
                return False
            turn[0] = kept
            return True

        result = retention.purge_runs(
            self.runtime, older_than=self.older_than, keep_going=keep_going
        )
        logger.info(
            "periodic purge done",
            extra={
                "worker": self.worker,
                "runs": result.runs,
                "rows": sum(result.rows.values()),
                "cutoff": result.cutoff.isoformat(),
                "kept_compensating": result.kept_compensating,
            },
        )
