"""The :class:`Client`: start, inspect and list runs, and perform delivered work."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from squidmesh_sdk import arguments, errors
from squidmesh_sdk.clock import Clock, SystemClock
from squidmesh_sdk.compiler import versions as workflow_versions
from squidmesh_sdk.definition.flow import RateLimit
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.executors.inline import InlineExecutor
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.port.executor import Executor, ExecutorBinding
from squidmesh_sdk.runtime import (
    finishing,
    lifecycle,
    manual,
    resume,
    retention,
    runner,
    signals,
)
from squidmesh_sdk.runtime import watcher as run_watcher
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import LoggingObserver, Observer
from squidmesh_sdk.runtime.explanation import RunExplanation
from squidmesh_sdk.runtime.retention import PurgeResult
from squidmesh_sdk.runtime.runner import CronStart
from squidmesh_sdk.runtime.tracing import TelemetryObserver
from squidmesh_sdk.store import flow as flow_store
from squidmesh_sdk.store import migrations, run_reads
from squidmesh_sdk.store.database import Database
from squidmesh_sdk.store.flow import QueueLimits
from squidmesh_sdk.store.records import Run, Signal

__all__ = ["Client", "RunHandle"]

WorkflowRef = str | Workflow | WorkflowDefinition


class Client:
    """The entry point to squidmesh: one per process, shared by threads.

    Args:
        database: Where runs live: a SQLAlchemy URL (``sqlite:///app.db``,
            ``postgresql+psycopg://...``), an ``Engine``, or a :class:`Database`.
        workflows: Every workflow this process starts or executes. Each is compiled here, so
            a broken declaration fails at start-up with every problem listed. Several
            versions of one workflow may be given (each with its own ``version=``, or differing
            in structure): runs stay on the version they started on, and new runs start on the
            one listed last.
        executor: How step work is delivered; defaults to an :class:`InlineExecutor`, which
            runs it in this process as soon as it is committed.
        clock: The time source; tests pass a fake clock (see :mod:`squidmesh_sdk.testing`).
        observers: Receive runtime events after each commit; defaults to structured logging.
            OpenTelemetry spans and metrics are always recorded (they cost next to nothing
            until the host configures the OpenTelemetry SDK).
        stale_step_timeout: Seconds after which a redelivered job may take over a step still
            marked running, presumed abandoned by a dead worker (its attempt is recorded as
            ``abandoned`` and a new one starts). ``None`` (the default) never takes over; it
            must be longer than the slowest step.

    Raises:
        DefinitionError: a workflow does not compile.
        InvalidArgument: two workflows share a name and a version, or an argument of the
            wrong type or range (``InvalidArgument`` is also a ``ValueError``).
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
    ) -> None:
        arguments.check_client(database, workflows, stale_step_timeout)
        observers = arguments.check_collaborators(executor, clock, observers)
        versions = workflow_versions.held_versions(workflows)
        definitions = workflow_versions.current(versions)
        self._owns_database = not isinstance(database, Database)
        store = database if isinstance(database, Database) else Database(database)
        try:
            self._build(
                store, definitions, versions, executor, clock, observers, stale_step_timeout
            )
        except BaseException:
            if self._owns_database:
                store.dispose()  # nothing else holds it: a refused client leaves nothing open
            raise

    def _build(
        self,
        store: Database,
        definitions: Mapping[str, WorkflowDefinition],
        versions: workflow_versions.Versions,
        executor: Executor | None,
        clock: Clock | None,
        observers: Iterable[Observer] | None,
        stale_step_timeout: float | None,
    ) -> None:
        self._watcher = run_watcher.RunWatcher(store)
        self._runtime = Runtime(
            database=store,
            workflows=definitions,
            executor=executor if executor is not None else InlineExecutor(),
            clock=clock if clock is not None else SystemClock(),
            observers=(
                TelemetryObserver(),
                self._watcher,  # runs this process finishes wake their waiters at once
                *(observers if observers is not None else (LoggingObserver(),)),
            ),
            stale_step_timeout=stale_step_timeout,
            versions=versions,
            before_commit=finishing.before_commit,
        )
        self._runtime.executor.bind(
            ExecutorBinding(
                perform=self.perform,
                deliver=functools.partial(runner.perform, self._runtime),
                runtime=self._runtime,
            )
        )

    @property
    def database(self) -> Database:
        """The database runs are kept in."""
        return self._runtime.database

    @property
    def executor(self) -> Executor:
        """The executor work is delivered through."""
        return self._runtime.executor

    @property
    def clock(self) -> Clock:
        """The client's time source."""
        return self._runtime.clock

    @property
    def workflows(self) -> Mapping[str, WorkflowDefinition]:
        """Workflow name to compiled definition."""
        return self._runtime.workflows

    @property
    def watcher(self) -> run_watcher.RunWatcher:
        """What wakes this client's waiters when a run finishes (the ``AsyncClient`` uses it)."""
        return self._watcher

    @property
    def runtime(self) -> Runtime:
        """The lower layer, for code that drives the stores or dispatcher itself."""
        return self._runtime

    def definition(self, workflow: WorkflowRef) -> WorkflowDefinition:
        """The compiled definition of a registered workflow.

        Raises:
            InvalidWorkflow: the client was not given that workflow.
        """
        return self._runtime.definition(arguments.workflow_name(workflow))

    def migrate(self) -> list[int]:
        """Create or upgrade squidmesh's tables; return the migration versions applied.

        Raises:
            SchemaTooNew: a newer release of squidmesh_sdk migrated the database further;
                nothing is changed.
        """
        applied = migrations.migrate(self._runtime.database, self._runtime.clock.now())
        self._runtime.check_schema()
        return applied

    def start_run(
        self,
        workflow: WorkflowRef,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        trigger: str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> Run:
        """Start a run: validate the payload, persist a ``pending`` run and dispatch its first work.

        The run and its first job commit together: if the executor refuses, nothing is saved.

        With an ``idempotency_key``, the same key for the same workflow is the same run: a
        call whose key already started a run of the workflow returns that run as it is now
        (whatever its status) and starts nothing, even when calls race (a unique index
        decides). The request must be the same one: another trigger or payload under a key
        already used, or a ``priority`` other than the run's, raises
        :class:`~squidmesh_sdk.errors.IdempotencyConflict`. Use :meth:`start` to also learn
        whether this call created the run. A key is kept as long as its run (see
        :meth:`purge_runs`).

        Args:
            workflow: The workflow (object, definition or name).
            payload: The trigger payload: a mapping or an instance of the trigger's model.
            trigger: The trigger to start through; the workflow's first trigger by default.
            idempotency_key: Makes retries of this call start one run (a request id, an
                order number...): non-empty text of at most 200 characters.
            priority: The priority of the run's jobs, -1000..1000, higher first (``None``: the
                workflow's, 0 unless declared). Honoured by the database queue and
                Procrastinate; see docs/workers.md, "Flow control".

        Raises:
            InvalidArgument: the workflow or trigger is not an object or a name, the key is
                not a non-empty string of at most 200 characters, or the priority is not an
                integer within -1000..1000.
            InvalidWorkflow: the workflow is not registered with this client.
            InvalidTrigger: the workflow has no such trigger.
            InvalidPayload: the payload breaks the trigger's contract (every problem listed).
            IdempotencyConflict: the key already started a run of this workflow from another
                trigger, payload or priority; nothing is started.
            DispatchFailed: the executor refused the first step; in particular
                :class:`~squidmesh_sdk.errors.InvalidConcurrencyKey` (the payload has no value
                at the workflow's concurrency key) and
                :class:`~squidmesh_sdk.errors.FlowControlUnsupported` (the executor cannot
                enforce the workflow's concurrency limit). Nothing is written.
        """
        return self.start(
            workflow, payload, trigger=trigger, idempotency_key=idempotency_key, priority=priority
        ).run

    def start(
        self,
        workflow: WorkflowRef,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        trigger: str | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> RunHandle:
        """:meth:`start_run`, returning a :class:`RunHandle`: the run, and whether it is new.

        ``handle.created`` is ``False`` when ``idempotency_key`` had already started the run
        (an HTTP handler answers 200 instead of 201, say); ``handle.wait()`` waits for it.

        Raises:
            As :meth:`start_run`.
        """
        name = arguments.workflow_name(workflow)
        trigger_name = None if trigger is None else arguments.trigger_name(trigger)
        key = None if idempotency_key is None else arguments.idempotency_key(idempotency_key)
        chosen = None if priority is None else arguments.priority(priority)
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json", by_alias=True)
        body = {} if payload is None else payload
        with self._starting(name):
            if key is None:
                run = runner.start_run(
                    self._runtime, name, body, trigger=trigger_name, priority=chosen
                )
                return RunHandle(run=run, created=True, client=self)
            run, created = runner.start_run_once(
                self._runtime, name, body, trigger=trigger_name, key=key, priority=chosen
            )
        return RunHandle(run=run, created=created, client=self)

    def _starting(self, workflow: str) -> contextlib.AbstractContextManager[None]:
        """Around a start: an idle worker of this process may take the run's first job at once."""
        executor = self._runtime.executor
        if isinstance(executor, DatabaseExecutor):
            return executor.starting(self._runtime, workflow)
        return contextlib.nullcontext()

    def wait_for_run(
        self,
        run_id: str,
        *,
        timeout: float | timedelta | None = None,
        include_history: bool = False,
    ) -> Run:
        """Block until the run is completed, failed or cancelled; return it.

        A failed or cancelled run is returned, not raised: look at its ``status`` and
        ``last_error`` (a failed run's saga rollback may still be running). On PostgreSQL the
        wait is woken by a notification sent when the run finishes, from whichever process
        finishes it; on SQLite it looks at the run again after 50 ms, then twice as long each
        time up to every 0.5 s (runs this client's own workers finish wake it at once).

        Args:
            run_id: The run.
            timeout: Seconds (or a ``timedelta``) to wait at most; ``None``, the default,
                waits as long as the run takes. ``0`` looks once.
            include_history: Return the run with its step runs, attempts and events, as
                ``inspect_run(..., include_history=True)``.

        Raises:
            InvalidArgument: a timeout that is negative, not finite or not a number.
            InvalidRunId, RunNotFound: no such run.
            RunWaitTimeout: the timeout ran out first (also a ``TimeoutError``); the run goes
                on.
        """
        seconds = arguments.wait_timeout(timeout)
        return run_watcher.wait_for_run(
            self._runtime,
            self._watcher,
            run_id,
            timeout=seconds,
            include_history=include_history is True,
        )

    def inspect_run(self, run_id: str, *, include_history: bool = False) -> Run:
        """Read a run.

        With ``include_history`` the run also carries ``step_runs`` (with their attempts),
        ``events`` (the audit trail) and ``steps`` (every declared step's state, ``waiting``
        for those not reached yet).

        Raises:
            InvalidRunId: not a UUID.
            RunNotFound: no such run.
        """
        return lifecycle.inspect_run(self._runtime, run_id, include_history=include_history)

    def explain_run(self, run_id: str) -> RunExplanation:
        """Why the run is where it is: reason, step, details, next actions and evidence.

        Raises:
            InvalidRunId: not a UUID.
            RunNotFound: no such run.
        """
        return lifecycle.explain_run(self._runtime, run_id)

    def list_runs(
        self,
        *,
        workflow: WorkflowRef | None = None,
        status: str | None = None,
        limit: int = 50,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Run]:
        """Runs, newest first, optionally filtered by workflow, status and creation time.

        Page through many runs by passing the last id of a page as ``after``: each page is
        one indexed range read (keyset paging), however deep. ``since`` keeps the runs
        created at or after it, ``until`` those created before it (aware datetimes).

        Raises:
            InvalidArgument: an unknown status, a limit that is not a positive integer, a
                workflow that is not a name, or a naive ``since`` / ``until``.
            InvalidRunId, RunNotFound: ``after`` is not the id of a run.
        """
        self._runtime.check_schema()
        name = arguments.workflow_name(workflow) if workflow is not None else None
        with self._runtime.database.read() as connection:
            return run_reads.list_runs(
                connection,
                workflow=name,
                status=status,
                limit=limit,
                after=after,
                since=since,
                until=until,
            )

    def cancel_run(
        self,
        run_id: str,
        *,
        actor: str | Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Run:
        """Cancel a run, recording who asked and why in its audit trail.

        A run with no step body running is cancelled at once: pending, paused (its paused
        step and attempt are failed with a cancellation error), or running / retrying while it
        waits for a durable timer, a retry delay or a queued step (the database queue's jobs
        for it are deleted; any other executor's job skips when it comes). A run with a step
        body in flight becomes ``cancelling``: the step still records its result, nothing new
        is dispatched, and the run is ``cancelled`` when that step ends, or when a delivery
        finds its worker dead (the attempt is recorded ``abandoned``, the step run
        ``failed``).

        The request is recorded in the same transaction as a ``cancelled`` audit event (in
        ``inspect_run(..., include_history=True).events``) at the step the run was at, with
        ``actor``, ``reason`` as its comment, and ``{"status": ...}`` the status it left the
        run in (``cancelled`` or ``cancelling``).

        Args:
            run_id: The run.
            actor: Who cancels: a non-empty name or a mapping of strict JSON values.
            reason: Why, as non-empty text.

        Raises:
            InvalidResume: a malformed actor or reason; nothing changed.
            InvalidRunId, RunNotFound: no such run.
            InvalidTransition: the run is finished or already cancelling.
        """
        return lifecycle.cancel_run(self._runtime, run_id, actor=actor, reason=reason)

    def replay_run(
        self,
        run_id: str,
        *,
        allow_irreversible: bool = False,
        actor: str | Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Run:
        """Start a new run with the same workflow, trigger and payload, linked to the old one.

        The replayed run's audit trail records the replay in the same transaction: a
        ``replayed`` event with ``actor``, ``reason`` as its comment and
        ``{"replay_run_id": ..., "allow_irreversible": ...}`` as metadata.

        Raises:
            InvalidResume: a malformed actor or reason; nothing changed.
            InvalidRunId, RunNotFound: no such run.
            UnsafeReplay: the run completed irreversible or non-compensatable steps (listed);
                pass ``allow_irreversible=True`` after checking it is safe.
            DispatchFailed: the executor refused the first step; nothing was saved.
        """
        return lifecycle.replay_run(
            self._runtime,
            run_id,
            allow_irreversible=allow_irreversible,
            actor=actor,
            reason=reason,
        )

    def retry_run(
        self,
        run_id: str,
        *,
        from_step: str | None = None,
        allow_irreversible: bool = False,
        actor: str | Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> Run:
        """Resume a ``failed`` run from its failed step, keeping its completed steps' outputs.

        The failed step runs again as a new step run (``charge@2``; the failed one keeps its
        attempts), with a fresh retry budget, and the run goes on from there. ``from_step``
        resumes from an earlier step the run reached instead (in a workflow with several
        paths: one of the steps that failed); the steps after it run again. Recorded in the
        run's audit trail (``retried``, with ``actor``, ``reason`` as its comment and the
        steps it resumed from) in the same transaction. Unlike :meth:`replay_run` no new run
        is made. The run's deadline, if it has one, still counts from its start.

        Raises:
            InvalidResume: a malformed actor or reason; nothing changed.
            InvalidRunId, RunNotFound: no such run.
            InvalidTransition: the run is not ``failed``.
            RetryRefused: its compensation has started (``code`` ``compensation_started``):
                the rollback undid what it would build on; replay it instead.
            InvalidStep: ``from_step`` is not a step it can resume from.
            UnsafeRetry: irreversible or non-compensatable steps that completed at or after
                that step would run again (listed); pass ``allow_irreversible=True`` after
                checking it is safe.
            DispatchFailed: the executor refused the step; nothing changed.
        """
        return resume.retry_run(
            self._runtime,
            run_id,
            from_step=from_step,
            allow_irreversible=allow_irreversible,
            actor=actor,
            reason=reason,
        )

    def unblock_run(
        self,
        run_id: str,
        *,
        actor: str | Mapping[str, Any] | None = None,
        comment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        step: str | None = None,
    ) -> Run:
        """Resume a run waiting at a ``pause`` step, recording who did it.

        ``step`` names the pause when several steps of the run wait at once (a step name, or
        a step run key such as ``"hold@2"``).

        Raises:
            InvalidResume: a malformed actor, comment or metadata.
            InvalidRunId, RunNotFound: no such run.
            InvalidTransition: the run is finished, or waits at no pause or approval.
            InvalidStep: it waits at an approval step (approve or reject it instead), ``step``
                names no waiting step, or several wait and ``step`` is missing.
            DispatchFailed: the executor refused the next step; nothing changed.
        """
        return manual.resume_run(
            self._runtime,
            run_id,
            "resumed",
            actor=actor,
            comment=comment,
            metadata=metadata,
            step=step,
        )

    def approve_run(
        self,
        run_id: str,
        *,
        actor: str | Mapping[str, Any],
        comment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        step: str | None = None,
    ) -> Run:
        """Approve a run's waiting approval step: it continues on the ``ok`` route.

        Raises:
            InvalidResume: no actor, or a malformed comment or metadata.
            InvalidRunId, RunNotFound, InvalidTransition, InvalidStep, DispatchFailed: as
                :meth:`unblock_run`.
        """
        return manual.resume_run(
            self._runtime,
            run_id,
            "approved",
            actor=actor,
            comment=comment,
            metadata=metadata,
            step=step,
        )

    def reject_run(
        self,
        run_id: str,
        *,
        actor: str | Mapping[str, Any],
        comment: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        step: str | None = None,
    ) -> Run:
        """Reject a run's waiting approval step: it continues on the ``error`` route.

        Without an ``error`` route the run fails (``approval_rejected``) and its compensation
        runs.

        Raises:
            InvalidResume: no actor, or a malformed comment or metadata.
            InvalidRunId, RunNotFound, InvalidTransition, InvalidStep, DispatchFailed: as
                :meth:`unblock_run`.
        """
        return manual.resume_run(
            self._runtime,
            run_id,
            "rejected",
            actor=actor,
            comment=comment,
            metadata=metadata,
            step=step,
        )

    def signal(
        self,
        run_id: str,
        name: str,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Signal:
        """Send signal ``name`` to a run, for its ``signal`` step waiting for that name.

        The payload is validated against the step's model, stored, and recorded in the run's
        audit trail (``signal_received``, with the key). If a step waits for the signal, it
        completes in the same transaction with the payload as its output and the run moves
        on; otherwise the signal is kept until a step starts waiting for it (signals of one
        name are consumed oldest first, one per wait). The same ``idempotency_key`` again
        returns the signal it delivered (``duplicate=True``) and changes nothing.

        Returns:
            The signal: ``consumed`` (``step`` names the step run that took it) or ``pending``.

        Raises:
            InvalidArgument: ``name`` or ``idempotency_key`` is not a non-empty string.
            InvalidRunId, RunNotFound: no such run.
            InvalidSignal: the run is finished or cancelling, no step of its definition waits
                for ``name``, or the key already delivered another signal (see its ``code``).
            InvalidPayload: the payload does not fit the signal's model; nothing is stored.
            DispatchFailed: the executor refused the run's next step; nothing changed.
        """
        body = (
            payload.model_dump(mode="json", by_alias=True)
            if isinstance(payload, BaseModel)
            else payload
        )
        return signals.send(self._runtime, run_id, name, body, idempotency_key=idempotency_key)

    def perform(self, payload: Mapping[str, Any], *, redelivered: bool = False) -> str:
        """Execute one payload an executor delivered; the entry point of host jobs.

        Deliveries are at least once: a duplicate of a payload whose work is done, or under
        way, does nothing. Pass ``redelivered=True`` when the queue knows the previous
        delivery of this payload was lost with its worker (a broker redelivering an
        unacknowledged message, a job retried after its worker stalled): a step that delivery
        left running is then taken over at once, its attempt recorded as ``abandoned``,
        instead of waiting for ``stale_step_timeout`` (a compensation callback likewise).

        Returns:
            What the delivery did: ``"executed"``, ``"reconciled"``, ``"skipped"`` (stale or
            duplicate), ``"cancelled"``, ``"paused"``; ``"started"``, ``"duplicate"`` or
            ``"skipped"`` for cron jobs; ``"compensated"`` or ``"skipped"`` for compensation.

        Raises:
            InvalidExecutorPayload: not something an executor produced.
            InvalidRunId, RunNotFound, InvalidWorkflow: the job names a run or workflow this
                client cannot find.
        """
        delivery = Delivery(reclaim=True) if redelivered else None
        return runner.perform(self._runtime, payload, delivery=delivery)

    def start_cron_trigger(
        self,
        workflow: WorkflowRef,
        trigger: str,
        signal_payload: Mapping[str, Any] | None = None,
    ) -> CronStart:
        """Start a run through a cron trigger, for hosts that run their own scheduler.

        The payload is built from the trigger's defaults alone. ``signal_payload`` may carry
        the activation's schedule identity: ``signal_id`` and ``intended_window``
        (``{"start_at": iso, "end_at": iso}``); a missing ``signal_id`` is derived from a
        complete window. A window with one bound is stored as given and names nothing: the
        run still starts, unless the trigger is idempotent and has no ``signal_id``. They are
        stored in the run's ``context["schedule"]`` (with ``received_at``), which steps read as
        ``ctx.schedule``. A trigger declared with ``idempotency`` starts at most one run per
        identity.

        Returns:
            ``outcome`` ``"started"``, or ``"duplicate"`` / ``"skipped"`` with the run that
            already held the window.

        Raises:
            InvalidSchedule: a malformed signal id or window.
            MissingScheduleIdempotencyKey: an idempotent trigger activated with neither a
                ``signal_id`` nor a complete window (``missing`` says which).
            InvalidWorkflow, InvalidTrigger, InvalidPayload, DispatchFailed: as
                :meth:`start_run`.
        """
        return runner.start_cron_trigger(
            self._runtime,
            arguments.workflow_name(workflow),
            arguments.trigger_name(trigger),
            signal_payload,
        )

    def set_queue_limits(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate_limit: RateLimit | None = None,
    ) -> QueueLimits:
        """Limit a queue of the database queue; workers enforce it from their next claim.

        ``concurrency``: at most this many of the queue's jobs run at once, over every
        worker. ``rate_limit``: at most ``count`` of its jobs start per period (a token bucket
        holding ``count`` tokens: an idle queue may start ``count`` at once). The limits
        replace any set before; both ``None`` clears them (as :meth:`clear_queue_limits`).
        A rate that changes starts with a full bucket.

        Raises:
            InvalidArgument: a bad queue name, concurrency below 1 or a malformed rate, or
                this client's executor is not the database queue (only its workers' claims
                enforce queue limits).
            SchemaNotReady: the database is not at this library's schema version.
        """
        name, concurrency, rate_limit = arguments.queue_limits(queue, concurrency, rate_limit)
        self._require_database_queue()
        self._runtime.check_schema()
        with self._runtime.transaction() as tx:
            return flow_store.set_limits(tx, name, concurrency=concurrency, rate=rate_limit)

    def clear_queue_limits(self, queue: str) -> bool:
        """Remove every limit of ``queue``; ``False`` if it had none.

        Raises:
            InvalidArgument: as :meth:`set_queue_limits`.
        """
        name, _, _ = arguments.queue_limits(queue, None, None)
        self._require_database_queue()
        self._runtime.check_schema()
        with self._runtime.transaction() as tx:
            return flow_store.clear_limits(tx, name)

    def queue_limits(self) -> list[QueueLimits]:
        """The limits of every queue that has some, by queue name."""
        self._runtime.check_schema()
        with self._runtime.database.read() as connection:
            return flow_store.list_limits(connection)

    def _require_database_queue(self) -> None:
        executor = self._runtime.executor
        if not isinstance(executor, DatabaseExecutor):
            raise errors.InvalidArgument(
                "queue",
                "queue limits apply to the built-in database queue, whose workers enforce them "
                f"when they claim jobs; this client's executor is {type(executor).__name__}",
            )

    def purge_runs(
        self,
        *,
        older_than: timedelta,
        statuses: Iterable[str] | None = None,
        workflow: WorkflowRef | None = None,
        dry_run: bool = False,
        batch_size: int = retention.DEFAULT_BATCH_SIZE,
    ) -> PurgeResult:
        """Delete finished runs last changed more than ``older_than`` ago, with all their rows.

        Only ``completed``, ``failed`` and ``cancelled`` runs are ever deleted, each with its
        step runs, attempts, audit events, jobs and outbox messages; runs replayed from a
        deleted run keep going (their ``replayed_from_run_id`` becomes ``None``). Runs with
        work still queued, failed runs whose saga rollback has not finished, and runs holding
        an idempotency key (a cron window's, or one they were started with) for less than a
        week are kept. Each batch of
        ``batch_size`` runs is deleted in a transaction of its own.

        Args:
            older_than: How long after its last change (``updated_at``) a run is kept.
            statuses: The finished statuses to purge; all three by default.
            workflow: Only runs of this workflow.
            dry_run: Delete nothing; report what would be deleted, with the run ids.
            batch_size: Runs per transaction (500 by default).

        Returns:
            Runs and rows per table deleted (or that would be), and for a dry run the ids.

        Raises:
            InvalidArgument: ``older_than`` not positive, ``batch_size`` below 1, or a status
                that is not a finished one (also a ``ValueError``).
            SchemaNotReady: the database is not at this library's schema version.
        """
        return retention.purge_runs(
            self._runtime,
            older_than=older_than,
            statuses=statuses,
            workflow=arguments.workflow_name(workflow) if workflow is not None else None,
            dry_run=dry_run,
            batch_size=batch_size,
        )

    def close(self) -> None:
        """Release the database connections this client opened."""
        self._watcher.close()
        if self._owns_database:
            self._runtime.database.dispose()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunHandle:
    """A run a :meth:`Client.start` call started, or found under its idempotency key.

    Attributes:
        run: The run as this call created it (``pending``; an in-process executor has
            already moved it on when the call returns), or as the call found it under its key.
        created: ``True`` when this call created the run; ``False`` when its idempotency key
            had already started it.
    """

    run: Run
    created: bool
    client: Client = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        """The run's id."""
        return self.run.id

    def wait(
        self, *, timeout: float | timedelta | None = None, include_history: bool = False
    ) -> Run:
        """Wait for the run to finish: :meth:`Client.wait_for_run`."""
        return self.client.wait_for_run(
            self.run.id, timeout=timeout, include_history=include_history
        )

    def inspect(self, *, include_history: bool = False) -> Run:
        """The run as it is now: :meth:`Client.inspect_run`."""
        return self.client.inspect_run(self.run.id, include_history=include_history)
