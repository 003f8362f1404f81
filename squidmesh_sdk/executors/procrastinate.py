"""Run workflow steps on Procrastinate workers, enqueued inside the runtime's transaction.

Procrastinate keeps its jobs in PostgreSQL, so :class:`ProcrastinateExecutor` inserts them
with the runtime's own psycopg connection, in the transaction of the state change that implies
them: a rollback leaves no job and a commit leaves all of them (a fan-out is one batch insert).
Delays (waits, retry backoff) become the job's ``scheduled_at``.

The Procrastinate task ``squidmesh.perform`` calls :meth:`squidmesh_sdk.Client.perform`. A
delivery that raised (the database was away) is retried with capped exponential backoff. A
worker that dies mid-step stops sending heartbeats; the periodic task
``squidmesh.housekeeping`` queues its jobs again, and their next delivery takes over the
step the dead worker left running. The same periodic task schedules the client's cron triggers.

Requires the ``procrastinate`` extra (``pip install 'squidmesh-sdk[procrastinate]'``), a
PostgreSQL database reached through psycopg 3, and Procrastinate's schema applied to that
same database (``procrastinate --app=... schema --apply``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
import psycopg
from procrastinate import jobs as procrastinate_jobs
from procrastinate.manager import JobManager

from squidmesh_sdk import arguments, errors
from squidmesh_sdk.definition.flow import MAX_PRIORITY
from squidmesh_sdk.executors.routing import QueueRouting
from squidmesh_sdk.executors.scheduler import CronScheduler
from squidmesh_sdk.port import payloads
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.port.executor import (
    PERMANENT_DELIVERY_ERRORS,
    DispatchMetadata,
    ExecutorBinding,
)
from squidmesh_sdk.runtime.schedules import CatchUp
from squidmesh_sdk.store import sending
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["HOUSEKEEPING_TASK_NAME", "TASK_NAME", "ProcrastinateExecutor"]

logger = logging.getLogger("squidmesh_sdk.procrastinate")

TASK_NAME = "squidmesh.perform"
"""The name of the Procrastinate task that performs squidmesh payloads."""

HOUSEKEEPING_TASK_NAME = "squidmesh.housekeeping"
"""The periodic task that queues again the jobs of workers that stopped sending heartbeats and
queues the activations of due cron triggers."""

_DEFER = "(procrastinate: defer jobs)"
"""What a database error of deferring jobs names as its statement."""
_MAX_RETRY_DELAY = 60
_NOT_HELD_RETRY_DELAY = 2
"""A job for a workflow or version this worker lacks goes back at once, without backoff: a
worker that holds it may be idle (Procrastinate cannot route jobs by what a worker holds)."""
# Procrastinate runs higher priorities first: above every run's priority (at most
# MAX_PRIORITY), so that no backlog of step jobs delays recovery.
_HOUSEKEEPING_PRIORITY = MAX_PRIORITY + 1


class _CappedBackoff(procrastinate.BaseRetryStrategy):
    """Retry a failed delivery forever, after 1, 2, 4 ... seconds, at most a minute."""

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate_jobs.Job
    ) -> procrastinate.RetryDecision | None:
        if isinstance(exception, PERMANENT_DELIVERY_ERRORS):
            return None
        if isinstance(exception, errors.InvalidWorkflow):
            return procrastinate.RetryDecision(retry_in={"seconds": _NOT_HELD_RETRY_DELAY})
        delay = min(_MAX_RETRY_DELAY, 2 ** min(job.attempts, 6))
        return procrastinate.RetryDecision(retry_in={"seconds": delay})


class ProcrastinateExecutor(QueueRouting):
    """Delivers step, compensation and cron work as Procrastinate jobs.

    Args:
        app: The host's Procrastinate application, on the same PostgreSQL database as the
            client. The tasks :data:`TASK_NAME` and :data:`HOUSEKEEPING_TASK_NAME` are
            registered on it.
        queue: The Procrastinate queue jobs go to.
        queue_for: Optional per-workflow routing: workflow name to queue name (``None`` keeps
            the default).
        stalled_after: Seconds without a heartbeat after which a worker counts as dead and
            its squidmesh jobs are queued again. Keep it above the workers'
            ``update_heartbeat_interval`` (10 s by default).
        housekeeping_cron: When the housekeeping task runs (Procrastinate's periodic syntax;
            a 6th column gives seconds): it recovers stalled jobs and queues due cron
            activations. ``None`` registers no periodic task: call :meth:`housekeeping`
            yourself.
        housekeeping_queue: The queue of the housekeeping task (default: ``queue``). Some
            worker must listen on it, or stalled jobs and cron windows wait. It runs ahead of
            step jobs (priority 1001, above any run's) so that a backlog does not delay
            recovery.
        cron: Schedule the client's cron triggers in the housekeeping task (each window
            starts one run, however many workers run it).
        cron_catch_up: Windows missed while no worker ran: ``"latest"`` (the default) starts
            the most recent one, ``"all"`` each of them, ``"none"`` none.
    """

    def __init__(
        self,
        app: procrastinate.App,
        *,
        queue: str = "squidmesh",
        queue_for: Callable[[str], str | None] | None = None,
        stalled_after: float = 30.0,
        housekeeping_cron: str | None = "* * * * * */10",
        housekeeping_queue: str | None = None,
        cron: bool = True,
        cron_catch_up: CatchUp = "latest",
    ) -> None:
        super().__init__(queue=queue, queue_for=queue_for)
        # All checked before the app gets its task: a refused executor leaves it as it was.
        if not isinstance(app, procrastinate.App):
            raise errors.InvalidArgument("app", f"app must be a Procrastinate app, got {app!r}")
        arguments.positive_seconds("stalled_after", stalled_after)
        arguments.catch_up("cron_catch_up", cron_catch_up)
        self.app = app
        self.stalled_after = stalled_after
        self._binding: ExecutorBinding | None = None
        self._scheduler: CronScheduler | None = None
        self._cron = cron
        self._cron_catch_up: CatchUp = cron_catch_up
        self._schema_checked = False
        # Jobs are inserted on the runtime's own (synchronous) psycopg connection whatever
        # connector the app uses; this manager only ever runs queries on a given connection.
        self._manager = JobManager(procrastinate.SyncPsycopgConnector())

        if TASK_NAME in app.tasks:
            raise errors.ExecutorNotReady(
                f"the Procrastinate app already has a {TASK_NAME!r} task: one "
                "ProcrastinateExecutor per Procrastinate app"
            )

        def perform(context: procrastinate.JobContext, payload: dict[str, Any]) -> str:
            return self._perform(context, payload)

        self.task = app.task(
            name=TASK_NAME, queue=queue, pass_context=True, retry=_CappedBackoff()
        )(perform)
        if housekeeping_cron is not None:

            async def housekeeping(context: procrastinate.JobContext, timestamp: int) -> None:
                await self._housekeeping(context.app)

            app.periodic(cron=housekeeping_cron)(
                app.task(
                    name=HOUSEKEEPING_TASK_NAME,
                    queue=housekeeping_queue or queue,
                    priority=_HOUSEKEEPING_PRIORITY,
                    pass_context=True,
                    queueing_lock=HOUSEKEEPING_TASK_NAME,
                )(housekeeping)
            )

    def bind(self, binding: ExecutorBinding) -> None:
        """Remember the client this executor serves.

        Raises:
            ExecutorNotReady: the client's database is not PostgreSQL reached through psycopg 3.
        """
        engine = binding.database.engine
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
            raise errors.ExecutorNotReady(
                "ProcrastinateExecutor needs the client's database on PostgreSQL through "
                f"psycopg 3 (postgresql+psycopg://...), not {engine.url.drivername}"
            )
        self._binding = binding
        if self._cron:
            self._scheduler = CronScheduler(binding.runtime, catch_up=self._cron_catch_up)

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        """Insert one job per step in ``tx``, in one batch: all commit, or none."""
        queue = self.queue_of(run.workflow)
        return self._defer(
            tx,
            [payloads.step_payload(run.id, step) for step in steps],
            queue=queue,
            schedule_in=schedule_in,
            priority=run.priority,
        )

    def enqueue_compensation(self, tx: Transaction, run: Run) -> DispatchMetadata:
        """Insert a compensation job in ``tx``."""
        payload = payloads.compensation_payload(run.id)
        return self._defer(tx, [payload], queue=self.queue_of(run.workflow), priority=run.priority)[
            0
        ]

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
        payload = payloads.cron_payload(workflow, trigger, signal)
        return self._defer(tx, [payload], queue=self.queue_of(workflow), schedule_in=schedule_in)[0]

    async def housekeeping(self) -> None:
        """Recover the jobs of stalled workers and queue due cron activations, once."""
        await self._housekeeping(self.app)

    def _defer(
        self,
        tx: Transaction,
        job_payloads: list[dict[str, Any]],
        *,
        queue: str,
        schedule_in: float | None = None,
        priority: int = procrastinate_jobs.DEFAULT_PRIORITY,
    ) -> list[DispatchMetadata]:
        connection = tx.connection.connection.dbapi_connection
        try:
            return self._defer_on(connection, job_payloads, queue, schedule_in, priority)
        except psycopg.Error as exc:
            raise sending.driver_error(tx.connection, exc, _DEFER, None) from exc
        except procrastinate.exceptions.ConnectorException as exc:
            # Procrastinate's wrapping of the driver's error: the database failing (a timeout,
            # a lost connection...), which the runtime retries, not a refusal of the job.
            if isinstance(exc.__cause__, psycopg.Error):
                raise sending.driver_error(tx.connection, exc.__cause__, _DEFER, None) from exc
            raise

    def _defer_on(
        self,
        connection: Any,
        job_payloads: list[dict[str, Any]],
        queue: str,
        schedule_in: float | None,
        priority: int,
    ) -> list[DispatchMetadata]:
        self._check_schema(connection)
        scheduled_at = None
        if schedule_in:
            # Procrastinate compares scheduled_at with the real clock, not the runtime's (which
            # a test may have frozen), so the delay is counted from now.
            scheduled_at = datetime.now(UTC) + timedelta(seconds=schedule_in)
        new = [
            procrastinate_jobs.Job(
                id=None,
                queue=queue,
                lock=None,
                queueing_lock=None,
                task_name=TASK_NAME,
                task_kwargs={"payload": payload},
                scheduled_at=scheduled_at,
                # The run's priority as is: Procrastinate also runs higher priorities first.
                priority=priority,
            )
            for payload in job_payloads
        ]
        deferred = self._manager.batch_defer_jobs(new, connection=connection)
        return [{"job_id": job.id, "queue": queue, "schedule_in": schedule_in} for job in deferred]

    def _check_schema(self, connection: Any) -> None:
        if self._schema_checked:
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            row = cursor.fetchone()
        if not (row and row[0]):
            raise errors.ExecutorNotReady(
                "Procrastinate's tables are missing from the squidmesh database: apply its "
                "schema there (procrastinate --app=<your app> schema --apply)"
            )
        self._schema_checked = True

    def _perform(self, context: procrastinate.JobContext, payload: dict[str, Any]) -> str:
        binding = self._binding
        if binding is None:
            raise RuntimeError("ProcrastinateExecutor is not bound to a squidmesh Client")
        # A job delivered again was either retried after raising, or re-queued because its
        # worker stalled: either way no one else is performing it now.
        redelivered = context.job.attempts > 0
        try:
            job = context.job
            delivery = Delivery(reclaim=redelivered, queue=job.queue, message_id=str(job.id))
            return binding.deliver(payload, delivery=delivery)
        except PERMANENT_DELIVERY_ERRORS:
            logger.exception("dropping a squidmesh job that can never succeed")
            raise

    async def _housekeeping(self, app: procrastinate.App) -> None:
        # Each duty runs whatever happened to the other: a failed recovery must not cost a
        # cron window, nor the reverse.
        try:
            await self._retry_stalled(app)
        except Exception:
            logger.warning("recovering stalled jobs failed", exc_info=True)
        if self._scheduler is not None:
            try:
                await asyncio.to_thread(self._scheduler.tick)
            except Exception:
                logger.warning("cron tick failed", exc_info=True)

    async def _retry_stalled(self, app: procrastinate.App) -> int:
        stalled = await app.job_manager.get_stalled_jobs(
            task_name=TASK_NAME, seconds_since_heartbeat=self.stalled_after
        )
        count = 0
        for job in stalled:
            try:
                await app.job_manager.retry_job(job)
            except Exception:
                logger.info("a stalled job changed before it was queued again", exc_info=True)
                continue
            count += 1
        if count:
            logger.warning("queued again the jobs of stalled workers", extra={"jobs": count})
        return count
