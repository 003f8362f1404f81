"""An executor that runs work in this process, for scripts and tests.

Jobs are handed over only after the transaction that produced them commits, and by default
run at once, in the thread that committed, until nothing is due. Delayed jobs wait in memory
until the clock reaches them (:meth:`InlineExecutor.run_due`); with the fake clock of
:mod:`squidmesh_sdk.testing` a test moves time forward instead of sleeping.

Nothing here is durable: a process that exits forgets its queued jobs. Use the database
queue (or another durable executor) for real work.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from squidmesh_sdk.port import payloads
from squidmesh_sdk.port.executor import DispatchMetadata, ExecutorBinding
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["InlineExecutor"]


class InlineExecutor:
    """Runs delivered work in-process.

    Args:
        run_immediately: Run due work as soon as it is committed (the default). When false,
            work waits until :meth:`run_due` is called, which lets a test inspect a run between
            steps or deliver jobs from several threads itself.
    """

    writes_through_sqlalchemy = True
    accepts_concurrency_limits = True
    """Workflows with ``concurrency=`` run, but their limits are not enforced: each caller
    runs its own run's steps in its own thread, one at a time (see docs/workers.md, "Flow
    control"). Refusing them would make such workflows untestable in-process."""
    """Never touches ``tx.connection``: no pipeline flush first."""

    def __init__(self, *, run_immediately: bool = True) -> None:
        self.run_immediately = run_immediately
        self._binding: ExecutorBinding | None = None
        self._queue: list[tuple[datetime, int, dict[str, Any]]] = []
        self._sequence = itertools.count()
        self._queue_lock = threading.Lock()
        self._drain_lock = threading.Lock()

    def bind(self, binding: ExecutorBinding) -> None:
        """Remember how to perform jobs and which clock decides when they are due."""
        self._binding = binding

    def enqueue_step(
        self, tx: Transaction, run: Run, step: str, *, schedule_in: float | None = None
    ) -> DispatchMetadata:
        """Queue one step, handed over when ``tx`` commits."""
        return self._enqueue(tx, [payloads.step_payload(run.id, step)], schedule_in)[0]

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        """Queue several steps, all handed over when ``tx`` commits."""
        jobs = [payloads.step_payload(run.id, step) for step in steps]
        return self._enqueue(tx, jobs, schedule_in)

    def enqueue_compensation(self, tx: Transaction, run: Run) -> DispatchMetadata:
        """Queue a saga rollback."""
        return self._enqueue(tx, [payloads.compensation_payload(run.id)], None)[0]

    def enqueue_cron(
        self,
        tx: Transaction,
        workflow: str,
        trigger: str,
        *,
        signal: Mapping[str, Any] | None = None,
        schedule_in: float | None = None,
    ) -> DispatchMetadata:
        """Queue a cron activation."""
        return self._enqueue(tx, [payloads.cron_payload(workflow, trigger, signal)], schedule_in)[0]

    @property
    def pending(self) -> list[tuple[datetime, dict[str, Any]]]:
        """Jobs not yet run, soonest first, with the time each becomes due."""
        with self._queue_lock:
            return [(due, dict(job)) for due, _, job in sorted(self._queue)]

    def next_due(self) -> datetime | None:
        """When the soonest queued job becomes due, or ``None`` when nothing is queued."""
        with self._queue_lock:
            return self._queue[0][0] if self._queue else None

    def run_due(self) -> int:
        """Perform every job that is due, including jobs they queue; return how many ran.

        One thread drains at a time; a call made while another thread drains returns at once
        and leaves the work to it. An exception from ``perform`` propagates to the caller and
        leaves the remaining jobs queued.
        """
        binding = self._require_binding()
        ran = 0
        while True:
            if not self._drain_lock.acquire(blocking=False):
                return ran
            try:
                while (job := self._pop_due(binding.clock.now())) is not None:
                    ran += 1
                    binding.perform(job)
            finally:
                self._drain_lock.release()
            # A job accepted while the lock was being released would otherwise wait.
            if self._pop_due(binding.clock.now(), peek=True) is None:
                return ran

    def run_next(self) -> bool:
        """Perform the soonest job that is due, and only it; return whether one ran.

        Lets a test step through work one delivery at a time (jobs it queues wait).
        """
        binding = self._require_binding()
        job = self._pop_due(binding.clock.now())
        if job is None:
            return False
        binding.perform(job)
        return True

    def _enqueue(
        self, tx: Transaction, jobs: list[dict[str, Any]], schedule_in: float | None
    ) -> list[DispatchMetadata]:
        due = tx.now + timedelta(seconds=schedule_in or 0)

        def accept() -> None:
            with self._queue_lock:
                for job in jobs:
                    heapq.heappush(self._queue, (due, next(self._sequence), job))
            if self.run_immediately:
                self.run_due()

        tx.after_commit(accept)
        return [{"executor": "inline", "schedule_in": schedule_in} for _ in jobs]

    def _pop_due(self, now: datetime, *, peek: bool = False) -> dict[str, Any] | None:
        with self._queue_lock:
            if not self._queue or self._queue[0][0] > now:
                return None
            return self._queue[0][2] if peek else heapq.heappop(self._queue)[2]

    def _require_binding(self) -> ExecutorBinding:
        if self._binding is None:
            raise RuntimeError("this InlineExecutor is not attached to a Client yet")
        return self._binding
