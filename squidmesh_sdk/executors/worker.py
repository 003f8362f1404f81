"""Workers for the built-in database queue.

A :class:`Worker` claims due jobs from ``squidmesh_jobs`` and performs them on a pool of
threads (async steps run on the worker's event loop). While a job runs, the worker holds a
lease on it and renews it with heartbeats. Every worker also rescues jobs whose lease ran out
(their worker died or lost the database): they are queued again, and their next delivery takes
over the step the dead worker left running, recording that attempt as ``abandoned``
(:mod:`~squidmesh_sdk.executors.leases`). A job whose delivery raised is retried with backoff,
then kept as failed (:mod:`~squidmesh_sdk.executors.job_settlement`).

Any number of worker processes, on any number of machines, can share one PostgreSQL database:
claims use ``FOR UPDATE SKIP LOCKED``, so no job is taken twice, and ``LISTEN``/``NOTIFY``
wakes idle workers as soon as work is committed. On SQLite, workers poll (and in-process
workers are woken directly).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from types import FrameType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from squidmesh_sdk import arguments, errors, telemetry
from squidmesh_sdk.errors import SquidmeshError
from squidmesh_sdk.executors import queue_metrics
from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.executors.job_settlement import finish_job, settle_failed_delivery
from squidmesh_sdk.executors.leases import keep_leases, rescue_expired
from squidmesh_sdk.executors.listener import QueueListener
from squidmesh_sdk.executors.purge import PeriodicPurge
from squidmesh_sdk.executors.scheduler import CronScheduler
from squidmesh_sdk.executors.step_threads import step_threads
from squidmesh_sdk.executors.threads import DeliveryThreads
from squidmesh_sdk.port import payloads
from squidmesh_sdk.port.continuation import Continuation, continuation, current_continuation
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import claiming, runner, schedules
from squidmesh_sdk.runtime.core import RuntimeOwner
from squidmesh_sdk.runtime.group_commit import GroupCommit, grouping
from squidmesh_sdk.runtime.schedules import CatchUp
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import flow as flow_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.jobs import Job

__all__ = ["Worker"]

logger = logging.getLogger("squidmesh_sdk.worker")

_schedule_to_start = telemetry.meter.create_histogram(
    "squidmesh.job.schedule_to_start",
    unit="s",
    description="Time from when a job was due to when a worker claimed it",
)


class Worker:
    """Delivers jobs of the database queue to ``client.perform``.

    Args:
        client: A client whose executor is a :class:`DatabaseExecutor`.
        queues: The queues to take jobs from.
        concurrency: Jobs performed at once (threads).
        lease: Seconds a claimed job stays leased without a heartbeat; heartbeats renew it
            every third of that. A job whose worker stops heartbeating is rescued after it.
        poll_interval: Seconds between looks at the queue when nothing woke the worker.
        shutdown_timeout: On :meth:`stop`, seconds to let running jobs finish before giving up
            on them (their leases then expire and other workers take them over).
        max_deliveries: Deliveries of a job whose ``perform`` keeps raising before it is kept
            as ``failed`` (a dead letter) instead of retried.
        cron: Also schedule the client's cron triggers (see
            :class:`~squidmesh_sdk.executors.scheduler.CronScheduler`). Every worker may do
            it: each window still starts one run.
        cron_catch_up: Windows missed while no worker ran: ``"latest"`` (the default) starts
            the most recent one, ``"all"`` each of them (up to 100), ``"none"`` none.
        name: This worker's id in ``locked_by``; host, pid and a random suffix by default.
        purge_after: Also purge finished runs last changed longer ago than this, as
            :meth:`Client.purge_runs <squidmesh_sdk.Client.purge_runs>` does; ``None`` (the
            default) never purges. However many workers have it, one at a time purges, at most
            once per ``purge_interval``.
        purge_interval: Seconds between two periodic purges, across all workers.
        group_commit: Write the outcomes of steps that finish at the same time in one
            transaction (see :mod:`~squidmesh_sdk.runtime.group_commit`); only with
            ``concurrency`` above 1. A lone outcome never waits for others. ``None`` (the
            default) does it on SQLite, whose single writer commits one transaction at a
            time, and not on PostgreSQL, which already shares one WAL flush among concurrent
            commits (there, writing the outcomes one after another on one connection was
            measured slower than writing them at once on several). ``True`` or ``False``
            decides for every database.

    Raises:
        InvalidArgument: the client does not use a :class:`DatabaseExecutor`, or a bad
            setting (also a ``ValueError``).
    """

    def __init__(
        self,
        client: RuntimeOwner,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = 4,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        shutdown_timeout: float = 30.0,
        max_deliveries: int = 25,
        name: str | None = None,
        cron: bool = True,
        cron_catch_up: CatchUp = "latest",
        purge_after: timedelta | None = None,
        purge_interval: float = 300.0,
        group_commit: bool | None = None,
    ) -> None:
        executor = getattr(getattr(client, "runtime", None), "executor", None)
        if not isinstance(executor, DatabaseExecutor):
            raise errors.InvalidArgument(
                "client",
                "Worker delivers jobs of the database queue: create the Client with "
                "executor=DatabaseExecutor()",
            )
        queues = arguments.worker_queues(queues)
        arguments.worker_settings(
            concurrency=concurrency,
            lease=lease,
            poll_interval=poll_interval,
            shutdown_timeout=shutdown_timeout,
            max_deliveries=max_deliveries,
            name=name,
            purge_after=purge_after,
            purge_interval=purge_interval,
        )
        arguments.catch_up("cron_catch_up", cron_catch_up)
        self.client = client
        self.runtime = client.runtime
        # The workflows and versions this worker can run: fixed with its client.
        self._holds = self.runtime.holds
        self.executor: DatabaseExecutor = executor
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.max_deliveries = max_deliveries
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        # Queues of this worker with limits, and those with a rate limit (see _read_limits).
        self._limited: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self._stopping = threading.Event()
        self._signal_received: int | None = None
        self._stopped = threading.Event()
        self._drained = threading.Event()
        self._threads = DeliveryThreads(concurrency)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: set[concurrent.futures.Future[None]] = set()
        self._thread: threading.Thread | None = None
        if group_commit is None:
            group_commit = self.runtime.database.dialect == "sqlite"
        self.group_commit = (
            GroupCommit(self.runtime, max_group=concurrency)
            if group_commit and concurrency > 1
            else None
        )
        """Where delivery threads write their outcomes together (``None``: one by one)."""
        self.scheduler = CronScheduler(self.runtime, catch_up=cron_catch_up) if cron else None
        self.purge_after = purge_after
        self.purge_interval = purge_interval
        self._purger = (
            PeriodicPurge(
                self.runtime,
                worker=self.name,
                older_than=purge_after,
                interval=purge_interval,
                stopping=self._stopping.is_set,
            )
            if purge_after is not None
            else None
        )

    # -- lifecycle -----------------------------------------------------------------------

    def run(self, *, install_signal_handlers: bool = False) -> None:
        """Process jobs until :meth:`stop` is called (or SIGTERM / SIGINT, when installed).

        Running jobs are allowed to finish (up to ``shutdown_timeout``) before it returns.

        Raises:
            SchemaNotReady: the database is not at this library's schema version (older, or
                :class:`~squidmesh_sdk.errors.SchemaTooNew`): no job is taken.
        """
        try:
            self.client.runtime.check_schema()
        except BaseException:
            self._stopped.set()
            raise
        previous = self._install_signal_handlers() if install_signal_handlers else {}
        self.executor.add_waker(self._wake)
        queue_metrics.register(self, self.runtime.database, self.runtime.clock)
        self._announce()
        try:
            if self._purger is not None:
                self._purger.start()
            with step_threads(self.concurrency) as pool:
                self._pool = pool
                self.executor.add_idle_worker(self)
                self._loop_forever(pool)
        finally:
            self.executor.remove_idle_worker(self)
            self._pool = None
            if self._purger is not None:
                self._purger.stop(self.shutdown_timeout)
            self.executor.remove_waker(self._wake)
            queue_metrics.unregister(self)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._stopped.set()

    def _announce(self) -> None:
        """Log what this worker serves: queues, workflows with versions, cron schedules."""
        now = self.runtime.clock.now()
        cron = [
            {
                "workflow": workflow,
                "trigger": trigger.name,
                "schedule": f"{trigger.expression} ({trigger.timezone or 'UTC'})",
                "next": schedules.next_start(trigger, now).isoformat(),
            }
            for workflow, trigger in (self.scheduler.triggers if self.scheduler else ())
        ]
        logger.info(
            "worker started",
            extra={
                "worker": self.name,
                "queues": list(self.queues),
                "concurrency": self.concurrency,
                "workflows": {name: list(v) for name, v in self.runtime.holds.items()},
                "cron": cron,
            },
        )

    def start(self) -> None:
        """Run in a background thread; stop it with :meth:`stop`.

        Raises:
            SchemaNotReady: as :meth:`run`, here in the caller's thread.
        """
        if self._thread is not None:
            raise RuntimeError("this worker was already started")
        self.client.runtime.check_schema()
        self._thread = threading.Thread(target=self.run, name=f"squidmesh-worker-{self.name}")
        self._thread.start()

    def stop(self, *, wait: bool = True) -> None:
        """Stop claiming jobs; with ``wait``, return once running jobs finished."""
        self._stopping.set()
        self._wake.set()
        if wait and self._thread is not None:
            self._thread.join()
        elif wait:
            self._stopped.wait()

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the loop ------------------------------------------------------------------------

    def _loop_forever(self, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        heartbeat = threading.Thread(
            target=keep_leases,
            args=(self.runtime, self.name, self.lease, self._threads.job_ids, self._drained),
            name="squidmesh-heartbeat",
        )
        heartbeat.start()
        listener = (
            QueueListener(self.runtime.database, self.queues, self._wake, self._stopping)
            if self.runtime.database.dialect == "postgresql"
            else None
        )
        if listener is not None:
            listener.start()
        next_rescue = 0.0
        next_limits = 0.0
        backoff = 0.0
        try:
            while not self._stop_requested():
                self._wake.clear()
                try:
                    if time.monotonic() >= next_rescue:
                        if rescue_expired(self.runtime, self.name):
                            self._wake.set()
                        next_rescue = time.monotonic() + max(self.lease / 2, 0.05)
                    if time.monotonic() >= next_limits:
                        self._read_limits()
                        next_limits = time.monotonic() + max(self.poll_interval, 1.0)
                    if self.scheduler is not None and self.scheduler.tick():
                        self._wake.set()
                    claimed = self._claim(pool)
                    backoff = 0.0
                except SQLAlchemyError as exc:
                    backoff = min(max(backoff * 2, 0.1), 10.0)
                    logger.warning(
                        "database unavailable; worker retrying",
                        extra={"worker": self.name, "error": str(exc)[:200], "retry_in": backoff},
                    )
                    self._idle(backoff)
                    continue
                except Exception:
                    # Anything else is a bug, but a loop that ended would leave the worker
                    # claiming nothing, its runs waiting for good: say so, and go on.
                    backoff = min(max(backoff * 2, 0.1), 10.0)
                    logger.exception(
                        "worker loop failed; retrying",
                        extra={"worker": self.name, "retry_in": backoff},
                    )
                    self._idle(backoff)
                    continue
                if claimed == 0 or self._threads.free() == 0:
                    self._idle(self.poll_interval)
        finally:
            self._stopping.set()
            self._drain(pool)
            self._drained.set()
            heartbeat.join()
            if listener is not None:
                listener.join()
            logger.info("worker stopped", extra={"worker": self.name})

    def _read_limits(self) -> None:
        """Note which of this worker's queues have limits, for continuations to respect.

        Claims read the limits themselves, exactly; a continuation skips the claim, so it
        goes by this view, read once a second (or every ``poll_interval``, if longer); see
        :meth:`Continuation.may_continue_with
        <squidmesh_sdk.port.continuation.Continuation.may_continue_with>`.
        """
        with self.runtime.database.read() as connection:
            found = flow_store.list_limits(connection, self.queues)
        self._limited = (
            frozenset(limits.queue for limits in found),
            frozenset(limits.queue for limits in found if limits.rate is not None),
        )

    def _idle(self, seconds: float) -> None:
        """Wait until woken, up to ``seconds``, in slices short enough to notice a signal."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._wake.wait(min(remaining, 0.2)):
                return

    def _stop_requested(self) -> bool:
        if self._signal_received is not None and not self._stopping.is_set():
            logger.info(
                "worker stopping", extra={"worker": self.name, "signal": self._signal_received}
            )
            self._stopping.set()
        return self._stopping.is_set()

    def _claim(self, pool: concurrent.futures.ThreadPoolExecutor) -> int:
        free = self._threads.begin_claim()
        if free == 0:
            return 0
        claimed: list[Job] | None = None
        try:
            with self.runtime.transaction() as tx:
                found = claim_store.claim(
                    tx,
                    worker=self.name,
                    queues=self.queues,
                    limit=free,
                    lease=self.lease,
                    holds=self._holds,
                )
                # Each step starts in this transaction too: one commit fewer per claimed job.
                ahead = {job.id: self._claim_step(tx, job) for job in found}
            claimed = found
        finally:
            self._threads.end_claim(free, None if claimed is None else len(claimed))
        for job in claimed:
            _record_lag(tx, job)
            token = object()
            self._threads.occupy(token, job.id)
            self._submit(pool, job, token, ahead[job.id])
        return len(claimed)

    def _submit(
        self,
        pool: concurrent.futures.ThreadPoolExecutor,
        job: Job,
        token: object,
        claim: object | None,
    ) -> None:
        future = pool.submit(self._deliver_chain, job, token, claim)
        future.add_done_callback(self._on_done(token))
        self._futures.add(future)

    def offer_start(self, runtime: object, queue: str) -> tuple[object, Continuation] | None:
        """Reserve a free thread for a run ``runtime`` is starting in this process, if idle.

        For :meth:`DatabaseExecutor.starting
        <squidmesh_sdk.executors.database.DatabaseExecutor.starting>`: the thread's token and
        its offer, or ``None`` unless this worker runs for ``runtime`` (the same client),
        serves ``queue`` (the run's first job's) and it has no limits, takes work, has a
        thread free and is idle: its last claim found nothing due, no claim is being made and
        no wake is waiting. A busy worker's queue may hold jobs its next claim would take
        first; a run started meanwhile waits its turn there. :meth:`take_offered` must follow.
        """
        limited, rate_limited = self._limited
        if (
            runtime is not self.runtime
            or self._pool is None
            or queue not in self.queues
            or queue in limited
        ):
            return None
        token = self._threads.reserve(
            # Read under the lock _drain waits on: a stopping worker reserves nothing after.
            lambda: self._stopping.is_set() or self._wake.is_set()
        )
        if token is None:
            return None
        offer = Continuation(
            worker=self.name,
            lease=self.lease,
            queues=frozenset(self.queues),
            accepting=self._accepting,
            limited_queues=limited,
            rate_limited_queues=rate_limited,
            free_thread=True,
        )
        return token, offer

    def take_offered(self, token: object, offer: Continuation) -> None:
        """Perform the job the start handed ``offer`` on the reserved thread, or free it.

        Nothing was handed when the start failed, or its job could not skip the claim (a
        concurrency key): the job is queued then. If the loop was woken meanwhile and found
        no thread (this one was reserved), giving the thread back wakes it again.
        A stopping worker releases a handed job whose step did not start (the stop came
        during the start).
        """
        job = offer.job
        try:
            if job is not None and offer.claim is None and self._stopping.is_set():
                self._release(job)
                job = None
            if job is not None:
                self._perform_offered(token, job, offer.claim)
        finally:
            # Only now: _drain, waiting for reservations, must find the job's future.
            wake = self._threads.end_reservation(token, handed=job is not None)
        if wake:
            self._wake.set()

    def _perform_offered(self, token: object, job: Job, claim: object | None) -> None:
        self._threads.hand_over(token, job.id)
        try:
            pool = self._pool
            if pool is None:
                raise RuntimeError("the worker's threads are gone")
            self._submit(pool, job, token, claim)
        except RuntimeError:
            # Stopped past its shutdown timeout: the job's lease expires and it is rescued.
            self._threads.vacate(token)
            logger.warning(
                "worker stopped before it could perform a run's first job; its lease will expire",
                extra={"worker": self.name, "job_id": job.id, "run_id": job.run_id},
            )

    def _claim_next(self, token: object, tx: Transaction) -> tuple[Job, object | None] | None:
        """A delivering thread's next job, claimed in ``tx`` (the delivery's last transaction).

        The claim :meth:`_claim` makes for a free thread, for one job, made before the thread
        is free (see :meth:`Continuation.take_next_job
        <squidmesh_sdk.port.continuation.Continuation.take_next_job>`). ``token``: the thread's.
        """
        self._threads.begin_next_claim(token)
        claimed = claim_store.claim(
            tx, worker=self.name, queues=self.queues, limit=1, lease=self.lease, holds=self._holds
        )
        if not claimed:
            return None
        self._threads.next_claim_took_a_job()
        (job,) = claimed
        tx.after_commit(lambda: _record_lag(tx, job))
        return job, self._claim_step(tx, job)

    def _on_done(self, token: object) -> Callable[[concurrent.futures.Future[None]], None]:
        def done(future: concurrent.futures.Future[None]) -> None:
            # ``_deliver`` handles every Exception; what is not one would otherwise end in the
            # future, unseen. (The job is rescued once its lease expires.)
            error = None if future.cancelled() else future.exception()
            if error is not None:
                logger.error(
                    "job delivery ended with %s; its job is rescued once its lease expires",
                    type(error).__name__,
                    exc_info=error,
                    extra={"worker": self.name},
                )
            wake = self._threads.thread_ended(token)
            self._futures.discard(future)
            if wake:
                self._wake.set()

        return done

    def _drain(self, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        # A run started just before the stop: its job comes to a reserved thread.
        self._threads.wait_for_reservations(self.shutdown_timeout)
        futures = list(self._futures)
        _, pending = concurrent.futures.wait(futures, timeout=self.shutdown_timeout)
        if pending:
            logger.warning(
                "worker stopped with jobs still running; their leases will expire",
                extra={"worker": self.name, "jobs": len(pending)},
            )
        pool.shutdown(wait=False, cancel_futures=True)

    # -- one job -------------------------------------------------------------------------

    def _claim_step(self, tx: Transaction, job: Job) -> object | None:
        """Claim the step of a freshly claimed step job, or leave it to the delivery."""
        if job.kind != "step" or job.rescues > 0 or self._stopping.is_set():
            return None  # a rescued job first checks whether its step may be taken over
        try:
            step_job = payloads.parse(job.payload)
        except SquidmeshError:
            return None
        if not isinstance(step_job, payloads.StepJob):
            return None
        return claiming.claim_step(self.runtime, tx, step_job.run_id, step_job.step)

    def _deliver_chain(self, job: Job, token: object, claim: object | None = None) -> None:
        """Perform ``job``, then each continuation it hands over, until there is none.

        ``claim``: the job's step, already claimed by the transaction that leased the job.
        """
        found_nothing = False
        try:
            with grouping(self.group_commit):
                found_nothing = self._deliver_all(job, token, claim)
        finally:
            self._threads.delivery_ended(token, found_nothing=found_nothing)

    def _deliver_all(self, job: Job, token: object, claim: object | None) -> bool:
        """Deliver the chain; whether it ended on a next-job claim that found nothing due."""
        current: Job | None = job
        while current is not None:
            if self._stopping.is_set() and claim is None:
                # A stopping worker takes no new work: the continuation goes back to the queue.
                # (A continuation whose step is already claimed is performed: it has started.)
                if current is not job:
                    self._release(current)
                return False
            accepting = self._accepting
            # A step job's row may become its continuation (its delivery settles it in the
            # outcome's transaction, which queues the next step).
            reusable = current.id if current.kind == "step" else None
            limited, rate_limited = self._limited
            with continuation(
                self.name,
                self.lease,
                self.queues,
                accepting,
                reusable,
                delivered=current,
                limited_queues=limited,
                rate_limited_queues=rate_limited,
                claim_next=partial(self._claim_next, token),
            ) as offer:
                self._deliver(current, claim)
            current, claim = offer.job, offer.claim
            if current is not None:
                self._threads.occupy(token, current.id)
        return offer.found_nothing

    def _accepting(self) -> bool:
        return not self._stopping.is_set()

    def _release(self, job: Job) -> None:
        finish_job(self.runtime, lambda tx: job_store.release(tx, job.id, worker=self.name))

    def _deliver(self, job: Job, claim: object | None = None) -> None:
        runtime = self.runtime
        try:
            # The job's previous delivery is over: its worker died (a rescue), or it raised
            # (its last error), possibly after starting the step and before recording the
            # outcome. Nobody runs this job now; take its step over unless another job does.
            previous_ended = job.rescues > 0 or job.last_error is not None
            reclaim = previous_ended and self._may_take_over(job)
            delivery = Delivery(
                reclaim=reclaim,
                settle=self._settler(job),
                claim=claim,
                queue=job.queue,
                message_id=str(job.id),
            )
            runner.perform(runtime, job.payload, delivery=delivery)
        except Exception as exc:  # noqa: BLE001 - a failed delivery is retried, never fatal
            if _handed_on(job):
                # A committed outcome made the job's row the next job (performed next): the
                # job itself is done, and its row is not this delivery's to release.
                logger.warning(
                    "job delivery raised after its outcome was recorded",
                    extra={"worker": self.name, "job_id": job.id, "error": str(exc)[:200]},
                )
                return
            settle_failed_delivery(
                self.runtime, self.name, job, exc, max_deliveries=self.max_deliveries
            )
            return
        if not delivery.settled and not _handed_on(job):
            finish_job(self.runtime, lambda tx: job_store.complete(tx, job.id, worker=self.name))

    def _may_take_over(self, job: Job) -> bool:
        with self.runtime.database.read() as connection:
            now = self.runtime.clock.now()
            return not job_store.other_live_delivery(connection, job, now)

    def _settler(self, job: Job) -> Callable[[Any], None]:
        def settle(tx: Any) -> None:
            offer = current_continuation()
            if offer is not None and offer.reused_in(tx):
                return  # the row is the next job now: this transaction finished the job
            job_store.finish(tx, job.id, worker=self.name)

        return settle

    # -- plumbing ------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        def handle(signum: int, _frame: FrameType | None) -> None:
            # Only a plain assignment here: the handler runs between two bytecodes of the main
            # thread, which may hold an Event's lock at that moment; setting the Event from the
            # handler could then deadlock. The loop turns the flag into a stop.
            self._signal_received = signum

        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handle)
        return previous


def _handed_on(job: Job) -> bool:
    """Whether a committed transaction of this delivery made ``job``'s row the next job."""
    offer = current_continuation()
    return offer is not None and offer.job is not None and offer.job.id == job.id


def _record_lag(tx: Transaction, job: Job) -> None:
    """Record how long ``job`` waited, from due to claimed (the schedule-to-start metric)."""
    lag = max((tx.now - job.run_at).total_seconds(), 0.0)
    _schedule_to_start.record(lag, {"squidmesh.queue": job.queue, "squidmesh.kind": job.kind})
