"""The built-in database queue: jobs live in the runtime's own database.

Each job row is inserted **in the same transaction** as the state change that implies it, so a
committed change always has its job and a rolled-back one never does. Delayed work (waits,
retry backoff) is a row with a future ``run_at``: it survives restarts like everything else.
:class:`~squidmesh_sdk.executors.worker.Worker` processes deliver the jobs. On PostgreSQL the
insert also sends a ``NOTIFY`` (delivered on commit) so idle workers wake at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

import sqlalchemy as sa

from squidmesh_sdk.executors.routing import QueueRouting
from squidmesh_sdk.frozen import evolve
from squidmesh_sdk.port import flow, payloads
from squidmesh_sdk.port.continuation import Continuation, current_continuation, offering
from squidmesh_sdk.port.executor import DispatchMetadata, ExecutorBinding
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import Run

__all__ = ["NOTIFY_CHANNEL", "DatabaseExecutor", "IdleWorker"]

NOTIFY_CHANNEL = "squidmesh_jobs"
"""The PostgreSQL channel workers ``LISTEN`` on; the payload is the queue name."""


class IdleWorker(Protocol):
    """A worker of this process that may take a run being started here, on a free thread."""

    def offer_start(self, runtime: object, queue: str) -> tuple[object, Continuation] | None:
        """Reserve a free thread for a run of ``queue`` that ``runtime`` starts, or ``None``."""
        ...

    def take_offered(self, token: object, offer: Continuation) -> None:
        """After the start: perform what ``offer`` was handed, or free the reserved thread."""
        ...


class DatabaseExecutor(QueueRouting):
    """Queues work as rows of ``squidmesh_jobs``, written in the runtime's transaction.

    Args:
        queue: The queue jobs go to.
        queue_for: Optional per-workflow routing: workflow name to queue name (``None`` keeps
            the default), so that some workflows can get workers of their own.
    """

    writes_through_sqlalchemy = True
    """Its job inserts are prepared statements that join the pipeline: no flush first."""
    accepts_concurrency_limits = True
    """Workers' claims enforce per-key concurrency limits (and queue limits)."""

    def __init__(
        self, *, queue: str = "default", queue_for: Callable[[str], str | None] | None = None
    ) -> None:
        super().__init__(queue=queue, queue_for=queue_for)
        self._binding: ExecutorBinding | None = None
        self._wakers: list[threading.Event] = []
        self._idle_workers: list[IdleWorker] = []
        self._lock = threading.Lock()

    def bind(self, binding: ExecutorBinding) -> None:
        """Remember the client this executor serves."""
        self._binding = binding

    def add_waker(self, event: threading.Event) -> None:
        """Set ``event`` whenever this process commits new work (in-process workers use it)."""
        with self._lock:
            self._wakers.append(event)

    def remove_waker(self, event: threading.Event) -> None:
        """Stop setting ``event``."""
        with self._lock:
            if event in self._wakers:
                self._wakers.remove(event)

    def add_idle_worker(self, worker: IdleWorker) -> None:
        """Offer runs started in this process to ``worker`` while idle (see :meth:`starting`)."""
        with self._lock:
            self._idle_workers.append(worker)

    def remove_idle_worker(self, worker: IdleWorker) -> None:
        """Stop offering runs to ``worker``."""
        with self._lock:
            if worker in self._idle_workers:
                self._idle_workers.remove(worker)

    @contextmanager
    def starting(self, runtime: object, workflow: str) -> Iterator[None]:
        """While ``runtime`` starts a run of ``workflow``: its first job may go to an idle thread.

        A worker of this process with a free thread whose last claim found nothing due (see
        :meth:`Worker.offer_start <squidmesh_sdk.executors.worker.Worker.offer_start>`) has the
        job leased to it by the start's transaction, with the first step started there too,
        and performs it once that commits: no claim, no wake, one transaction fewer. The job
        goes to the queue as usual when no worker is idle, or when it may not skip the claim
        (another queue, a concurrency key, a queue with limits). A thread that is already
        delivering a job keeps its own offer (a step that starts a run).
        """
        with self._lock:
            workers = list(self._idle_workers)
        reserved = None
        if current_continuation() is None:
            for worker in workers:
                reserved = worker.offer_start(runtime, self.queue_of(workflow))
                if reserved is not None:
                    break
        if reserved is None:
            yield
            return
        token, offer = reserved
        try:
            with offering(offer):
                yield
        finally:
            worker.take_offered(token, offer)

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        """Insert one job per step in ``tx``: all of them commit, or none."""
        queue = self.queue_of(run.workflow)
        new = []
        for step in steps:
            limit = flow.concurrency_of(step)
            new.append(
                job_store.NewJob(
                    kind="step",
                    payload=payloads.step_payload(run.id, step),
                    queue=queue,
                    run_id=run.id,
                    step=step,
                    workflow=run.workflow,
                    definition_version=run.definition_version,
                    delay=schedule_in,
                    priority=run.priority,
                    concurrency_key=limit.key if limit is not None else None,
                    concurrency_limit=limit.limit if limit is not None else None,
                )
            )
        return self._insert(tx, new)

    def enqueue_compensation(self, tx: Transaction, run: Run) -> DispatchMetadata:
        """Insert a compensation job in ``tx``."""
        job = job_store.NewJob(
            kind="compensation",
            payload=payloads.compensation_payload(run.id),
            queue=self.queue_of(run.workflow),
            run_id=run.id,
            workflow=run.workflow,
            definition_version=run.definition_version,
            priority=run.priority,
        )
        return self._insert(tx, [job])[0]

    def enqueue_cron(
        self,
        tx: Transaction,
        workflow: str,
        trigger: str,
        *,
        signal: Mapping[str, Any] | None = None,
        schedule_in: float | None = None,
    ) -> DispatchMetadata:
        """Insert a cron activation job in ``tx``."""
        job = job_store.NewJob(
            kind="cron",
            payload=payloads.cron_payload(workflow, trigger, signal),
            queue=self.queue_of(workflow),
            workflow=workflow,
            delay=schedule_in,
        )
        return self._insert(tx, [job])[0]

    def _insert(self, tx: Transaction, new: list[job_store.NewJob]) -> list[DispatchMetadata]:
        offer = current_continuation()
        chosen: int | None = None
        if offer is not None and not offer.reserved and offer.accepting():
            for index, job in enumerate(new):
                if not job.delay and offer.may_continue_with(job.queue, job.concurrency_key):
                    offer.reserved = True
                    chosen = index
                    new[index] = evolve(job, leased_to=offer.worker, lease=offer.lease)
                    break
        immediate = sorted({job.queue for job in new if not job.delay and not job.leased_to})
        if immediate and tx.connection.dialect.name == "postgresql":
            # Delivered at commit, whatever its place in the transaction: sent first, it goes
            # to the server with the insert (in one round trip).
            for queue in immediate:
                _NOTIFY.send(tx.connection, {"channel": NOTIFY_CHANNEL, "queue": queue})
        ids, leased_until = self._enqueue(tx, new, chosen, offer)
        if chosen is not None and offer is not None:
            offer.pending = (new[chosen], ids[chosen], tx)
            tx.after_commit(partial(_hand_over, offer, new[chosen], ids[chosen], tx, leased_until))
        if immediate:
            tx.after_commit(self._wake)
        return [
            {"job_id": job_id, "queue": job.queue, "schedule_in": job.delay}
            for job_id, job in zip(ids, new, strict=True)
        ]

    @staticmethod
    def _enqueue(
        tx: Transaction,
        new: list[job_store.NewJob],
        chosen: int | None,
        offer: Continuation | None,
    ) -> tuple[list[int], datetime | None]:
        """Insert ``new``; the continuation (``new[chosen]``) rewrites the delivered job's row.

        Returns the jobs' ids, and the time the rewritten row's lease is known to last until
        (``None`` when no rewrite was tried; a rewrite found lost inserts the job after all, and
        the hand-over then leases it from now).

        The delivered job is finished by this transaction anyway (its delivery settles it with
        the outcome), so its row becomes the continuation job instead of being deleted while
        another is inserted: one statement instead of two, and no index entries to add and
        remove. If the delivered job's lease was lost meanwhile (a rescue requeued it), the
        row is left alone and the continuation is inserted as usual.
        """
        if (
            chosen is None
            or offer is None
            or offer.job_id is None
            or offer.delivered is None
            or offer.reused_by is not None
        ):
            return job_store.enqueue(tx, new), None
        continuation = new[chosen]
        others = [job for index, job in enumerate(new) if index != chosen]
        inserted = iter(job_store.enqueue(tx, others) if others else [])
        ids = [offer.job_id if index == chosen else next(inserted) for index in range(len(new))]

        def lost() -> None:
            # The rewrite touched nothing: insert the continuation after all. The delivered
            # job is not this worker's any more, so its settlement (skipped) had nothing to do.
            (job_id,) = job_store.enqueue(tx, [continuation])
            ids[chosen] = job_id
            if offer.pending is not None and offer.pending[2] is tx:
                offer.pending = (continuation, job_id, tx)

        # On PostgreSQL the rewrite travels with the transaction's next statement, so the ids
        # returned assume it worked; if it did not, the hand-over still gets the inserted job
        # (only the dispatch metadata, telemetry, names the delivered job's id then).
        offer.reused_by = tx
        return ids, job_store.reuse_later(tx, offer.delivered, continuation, lost)

    def _wake(self) -> None:
        with self._lock:
            wakers = list(self._wakers)
        for event in wakers:
            event.set()


_NOTIFY = Prepared(
    lambda _: sa.select(sa.func.pg_notify(sa.bindparam("channel"), sa.bindparam("queue")))
)


def _hand_over(
    offer: Continuation,
    new: job_store.NewJob,
    job_id: int,
    tx: Transaction,
    leased_until: datetime | None,
) -> None:
    if offer.settled:
        return
    if offer.pending is not None and offer.pending[2] is tx:
        job_id = offer.pending[1]  # the inserted job, if rewriting the delivered one failed
    if job_id != offer.job_id or leased_until is None:
        leased_until = tx.now + timedelta(seconds=offer.lease)  # inserted, leased from now
    # The worker's view of the job: due now, and leased at least until ``leased_until``. A
    # rewritten row keeps the first job's run_at and, while what the worker knew of its lease
    # left two thirds, that lease (store/jobs.reuse): the next rewrite decides from it. The
    # heartbeat renews the row by id, and the queue-lag metric is for claimed jobs only.
    offer.job = job_store.Job(
        id=job_id,
        queue=new.queue,
        kind=new.kind,
        payload=new.payload,
        run_id=new.run_id,
        step=new.step,
        workflow=new.workflow,
        definition_version=new.definition_version,
        priority=new.priority,
        concurrency_key=new.concurrency_key,
        concurrency_limit=new.concurrency_limit,
        status="running",
        run_at=tx.now,
        deliveries=1,
        rescues=0,
        locked_by=offer.worker,
        locked_until=leased_until,
        last_error=None,
    )
