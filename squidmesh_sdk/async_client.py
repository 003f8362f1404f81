"""The :class:`AsyncClient`: the :class:`~squidmesh_sdk.Client`'s operations as coroutines.

For asyncio hosts (FastAPI, Starlette, aiohttp): no call blocks the event loop. Each database
operation runs the synchronous client's code on a thread of a bounded pool owned by the async
client, and the coroutine awaits it; waiting for a run holds no thread at all (the
:class:`~squidmesh_sdk.runtime.watcher.RunWatcher` wakes an ``asyncio.Event``, reads go to the
pool).

Why threads rather than an asyncio database driver: an operation is one transaction that
validates, writes, and hands work to the executor inside it (a Celery outbox row, a
Procrastinate job, the database queue's job, or the in-process executor running the step
bodies after commit). Executors, observers and step bodies are synchronous code; an asyncio
driver would need a second implementation of the runtime, stores and executor port that
would drift from the first. Offloaded, one code path serves both clients, and the pool's size
bounds what a burst of requests can take: at most ``max_threads`` operations run at once (the
others queue in the pool, not on the event loop), and with a database URL each of those
threads keeps at most one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from squidmesh_sdk import arguments, errors
from squidmesh_sdk.client import Client, RunHandle, WorkflowRef
from squidmesh_sdk.clock import Clock
from squidmesh_sdk.definition.flow import RateLimit
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.port.executor import Executor
from squidmesh_sdk.runtime.events import Observer
from squidmesh_sdk.runtime.explanation import RunExplanation
from squidmesh_sdk.runtime.retention import DEFAULT_BATCH_SIZE, PurgeResult
from squidmesh_sdk.runtime.runner import CronStart
from squidmesh_sdk.runtime.watcher import WaitPlan
from squidmesh_sdk.store.database import Database
from squidmesh_sdk.store.flow import QueueLimits
from squidmesh_sdk.store.records import Run, Signal, canonical_run_id

__all__ = ["DEFAULT_MAX_THREADS", "AsyncClient", "AsyncRunHandle"]

DEFAULT_MAX_THREADS = 8
"""Threads an :class:`AsyncClient` runs database operations on, unless told otherwise."""

P = ParamSpec("P")
T = TypeVar("T")


class AsyncClient:
    """The :class:`~squidmesh_sdk.Client`'s operations as coroutines, for asyncio hosts.

    Takes the arguments of :class:`~squidmesh_sdk.Client` (and builds one), plus
    ``max_threads``; :meth:`from_client` wraps a client the host already has (a worker thread
    in the same process uses it). Every method has the same arguments, result and errors as the
    client's method of the same name. One per process, shared by every request.

    Args:
        database: As :class:`~squidmesh_sdk.Client`.
        workflows: As :class:`~squidmesh_sdk.Client`.
        executor: As :class:`~squidmesh_sdk.Client`.
        clock: As :class:`~squidmesh_sdk.Client`.
        observers: As :class:`~squidmesh_sdk.Client`.
        stale_step_timeout: As :class:`~squidmesh_sdk.Client`.
        max_threads: How many operations run at once, each on a thread of this client's pool;
            more wait for a free thread (without blocking the event loop).

    Raises:
        InvalidArgument: ``max_threads`` is not a positive integer, or as
            :class:`~squidmesh_sdk.Client`.
        DefinitionError: as :class:`~squidmesh_sdk.Client`.
    """

    def __init__(
        self,
        database: str | sa.URL | Engine | Database,
        workflows: Iterable[Workflow | WorkflowDefinition],
        *,
        executor: Executor | None = None,
        clock: Clock | None = None,
        observers: Iterable[Observer] | None = None,
        stale_step_timeout: float | None = None,
        max_threads: int = DEFAULT_MAX_THREADS,
    ) -> None:
        _check_max_threads(max_threads)
        client = Client(
            database,
            workflows,
            executor=executor,
            clock=clock,
            observers=observers,
            stale_step_timeout=stale_step_timeout,
        )
        self._setup(client, owns_client=True, max_threads=max_threads)

    @classmethod
    def from_client(cls, client: Client, *, max_threads: int = DEFAULT_MAX_THREADS) -> AsyncClient:
        """An async client over ``client``; :meth:`close` leaves ``client`` open.

        Raises:
            InvalidArgument: ``client`` is not a :class:`~squidmesh_sdk.Client`, or
                ``max_threads`` is not a positive integer.
        """
        if not isinstance(client, Client):
            raise errors.InvalidArgument("client", f"client must be a Client, got {client!r}")
        _check_max_threads(max_threads)
        instance = cls.__new__(cls)
        instance._setup(client, owns_client=False, max_threads=max_threads)
        return instance

    def _setup(self, client: Client, *, owns_client: bool, max_threads: int) -> None:
        self._client = client
        self._owns_client = owns_client
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="squidmesh")
        self._closed = False

    @property
    def client(self) -> Client:
        """The synchronous client the operations run on (give it to a ``Worker``)."""
        return self._client

    @property
    def database(self) -> Database:
        """The database runs are kept in."""
        return self._client.database

    @property
    def executor(self) -> Executor:
        """The executor work is delivered through."""
        return self._client.executor

    @property
    def clock(self) -> Clock:
        """The client's time source."""
        return self._client.clock

    @property
    def workflows(self) -> Mapping[str, WorkflowDefinition]:
        """Workflow name to compiled definition."""
        return self._client.workflows

    def definition(self, workflow: WorkflowRef) -> WorkflowDefinition:
        """The compiled definition of a registered workflow (no I/O, so not a coroutine).

        Raises:
            InvalidWorkflow: the client was not given that workflow.
        """
        return self._client.definition(workflow)

    async def _run(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``function`` on the pool; the caller's context variables (tracing) go with it."""
        if self._closed:
            raise errors.InvalidArgument("client", "this AsyncClient is closed")
        context = contextvars.copy_context()
        call = functools.partial(context.run, function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def migrate(self) -> list[int]:
        """:meth:`Client.migrate <squidmesh_sdk.Client.migrate>`."""
        return await self._run(self._client.migrate)

    async def start_run(
        self,
        workflow: WorkflowRef,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        trigger: str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> Run:
        """:meth:`Client.start_run <squidmesh_sdk.Client.start_run>`."""
        return await self._run(
            self._client.start_run,
            workflow,
            payload,
            trigger=trigger,
            idempotency_key=idempotency_key,
            priority=priority,
        )

    async def start(
        self,
        workflow: WorkflowRef,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        trigger: str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> AsyncRunHandle:
        """:meth:`Client.start <squidmesh_sdk.Client.start>`, with an :class:`AsyncRunHandle`."""
        handle: RunHandle = await self._run(
            self._client.start,
            workflow,
            payload,
            trigger=trigger,
            idempotency_key=idempotency_key,
            priority=priority,
        )
        return AsyncRunHandle(run=handle.run, created=handle.created, client=self)

    async def wait_for_run(
        self,
        run_id: str,
        *,
        timeout: float | timedelta | None = None,
        include_history: bool = False,
    ) -> Run:
        """:meth:`Client.wait_for_run <squidmesh_sdk.Client.wait_for_run>`, without a thread.

        Between looks at the run the coroutine awaits an ``asyncio.Event`` that the client's
        watcher sets (a PostgreSQL notification, or this process finishing the run); only the
        looks themselves run on the pool. Cancelling the coroutine stops the wait.
        """
        seconds = arguments.wait_timeout(timeout)
        key = canonical_run_id(run_id)
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            # The loop may have closed while a notification was on its way.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(woken.set)

        watcher = self._client.watcher
        plan = WaitPlan(key, seconds)
        unsubscribe = watcher.subscribe(key, wake)
        try:
            while True:
                woken.clear()
                run = await self._run(self._client.inspect_run, key)
                if plan.check(run):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), plan.pause(listening=watcher.listening))
        finally:
            unsubscribe()
        if include_history is True:
            return await self._run(self._client.inspect_run, key, include_history=True)
        return run

    async def inspect_run(self, run_id: str, *, include_history: bool = False) -> Run:
        """:meth:`Client.inspect_run <squidmesh_sdk.Client.inspect_run>`."""
        return await self._run(self._client.inspect_run, run_id, include_history=include_history)

    async def explain_run(self, run_id: str) -> RunExplanation:
        """:meth:`Client.explain_run <squidmesh_sdk.Client.explain_run>`."""
        return await self._run(self._client.explain_run, run_id)

    async def list_runs(
        self,
        *,
        workflow: WorkflowRef | None = None,
        status: str | None = None,
        limit: int = 50,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Run]:
        """:meth:`Client.list_runs <squidmesh_sdk.Client.list_runs>`."""
        return await self._run(
            self._client.list_runs,
            workflow=workflow,
            status=status,
            limit=limit,
            after=after,
            since=since,
            until=until,
        )

    async def cancel_run(
        self,
        run_id: str,
        *,
        actor: str | Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Run:
        """:meth:`Client.cancel_run <squidmesh_sdk.Client.cancel_run>`."""
        return await self._run(self._client.cancel_run, run_id, actor=actor, reason=reason)

    async def replay_run(
        self,
        run_id: str,
        *,
        allow_irreversible: bool = False,
        actor: str | Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Run:
        """:meth:`Client.replay_run <squidmesh_sdk.Client.replay_run>`."""
        return await self._run(
            self._client.replay_run,
            run_id,
            allow_irreversible=allow_irreversible,
            actor=actor,
            reason=reason,
        )

    async def unblock_run(
        self,
        run_id: str,
        *,
        actor: str | Mapping[str, Any] | None = None,
        comment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        step: str | None = None,
    ) -> Run:
        """:meth:`Client.unblock_run <squidmesh_sdk.Client.unblock_run>`."""
        return await self._run(
            self._client.unblock_run,
            run_id,
            actor=actor,
            comment=comment,
            metadata=metadata,
            step=step,
        )

    async def approve_run(
        self,
        run_id: str,
        *,
        actor: str | Mapping[str, Any],
        comment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        step: str | None = None,
    ) -> Run:
        """:meth:`Client.approve_run <squidmesh_sdk.Client.approve_run>`."""
        return await self._run(
            self._client.approve_run,
            run_id,
            actor=actor,
            comment=comment,
            metadata=metadata,
            step=step,
        )

    async def retry_run(
        self,
        run_id: str,
        *,
        from_step: str | None = None,
        allow_irreversible: bool = False,
        actor: str | Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Run:
        """:meth:`Client.retry_run <squidmesh_sdk.Client.retry_run>`."""
        return await self._run(
            self._client.retry_run,
            run_id,
            from_step=from_step,
            allow_irreversible=allow_irreversible,
            actor=actor,
            reason=reason,
        )

    async def signal(
        self,
        run_id: str,
        name: str,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Signal:
        """:meth:`Client.signal <squidmesh_sdk.Client.signal>`."""
        return await self._run(
            self._client.signal, run_id, name, payload, idempotency_key=idempotency_key
        )

    async def reject_run(
        self,
        run_id: str,
        *,
        actor: str | Mapping[str, Any],
        comment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        step: str | None = None,
    ) -> Run:
        """:meth:`Client.reject_run <squidmesh_sdk.Client.reject_run>`."""
        return await self._run(
            self._client.reject_run,
            run_id,
            actor=actor,
            comment=comment,
            metadata=metadata,
            step=step,
        )

    async def perform(self, payload: Mapping[str, Any], *, redelivered: bool = False) -> str:
        """:meth:`Client.perform <squidmesh_sdk.Client.perform>` (step bodies run on the pool)."""
        return await self._run(self._client.perform, payload, redelivered=redelivered)

    async def start_cron_trigger(
        self,
        workflow: WorkflowRef,
        trigger: str,
        signal_payload: Mapping[str, Any] | None = None,
    ) -> CronStart:
        """:meth:`Client.start_cron_trigger <squidmesh_sdk.Client.start_cron_trigger>`."""
        return await self._run(self._client.start_cron_trigger, workflow, trigger, signal_payload)

    async def purge_runs(
        self,
        *,
        older_than: timedelta,
        statuses: Iterable[str] | None = None,
        workflow: WorkflowRef | None = None,
        dry_run: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> PurgeResult:
        """:meth:`Client.purge_runs <squidmesh_sdk.Client.purge_runs>`."""
        return await self._run(
            self._client.purge_runs,
            older_than=older_than,
            statuses=statuses,
            workflow=workflow,
            dry_run=dry_run,
            batch_size=batch_size,
        )

    async def set_queue_limits(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate_limit: RateLimit | None = None,
    ) -> QueueLimits:
        """:meth:`Client.set_queue_limits <squidmesh_sdk.Client.set_queue_limits>`."""
        return await self._run(
            self._client.set_queue_limits, queue, concurrency=concurrency, rate_limit=rate_limit
        )

    async def clear_queue_limits(self, queue: str) -> bool:
        """:meth:`Client.clear_queue_limits <squidmesh_sdk.Client.clear_queue_limits>`."""
        return await self._run(self._client.clear_queue_limits, queue)

    async def queue_limits(self) -> list[QueueLimits]:
        """:meth:`Client.queue_limits <squidmesh_sdk.Client.queue_limits>`."""
        return await self._run(self._client.queue_limits)

    async def close(self) -> None:
        """Wait for operations under way, stop the pool, and close the client if it is ours.

        Further calls raise :class:`~squidmesh_sdk.errors.InvalidArgument`.
        """
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, functools.partial(self._pool.shutdown, wait=True))
        if self._owns_client:
            await loop.run_in_executor(None, self._client.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class AsyncRunHandle:
    """A run an :meth:`AsyncClient.start` call started, or found under its idempotency key.

    Attributes:
        run: The run as this call created it (``pending``), or as the call found it under its
            key.
        created: ``True`` when this call created the run; ``False`` when its idempotency key
            had already started it.
    """

    run: Run
    created: bool
    client: AsyncClient = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        """The run's id."""
        return self.run.id

    async def wait(
        self, *, timeout: float | timedelta | None = None, include_history: bool = False
    ) -> Run:
        """Wait for the run to finish: :meth:`AsyncClient.wait_for_run`."""
        return await self.client.wait_for_run(
            self.run.id, timeout=timeout, include_history=include_history
        )

    async def inspect(self, *, include_history: bool = False) -> Run:
        """The run as it is now: :meth:`AsyncClient.inspect_run`."""
        return await self.client.inspect_run(self.run.id, include_history=include_history)


def _check_max_threads(max_threads: object) -> None:
    if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
        raise errors.InvalidArgument(
            "max_threads", f"max_threads must be a positive integer, got {max_threads!r}"
        )
