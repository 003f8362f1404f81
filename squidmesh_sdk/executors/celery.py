"""Run workflow steps on Celery workers, through a transactional outbox.

Celery cannot join the runtime's database transaction, so publishing a task straight from it
could announce a state change that then rolls back, or commit one whose task is never sent.
:class:`CeleryExecutor` writes each message to ``squidmesh_outbox`` *in* the transaction, and
an :class:`~squidmesh_sdk.executors.outbox.OutboxRelay` publishes it once committed and due:

- right after the commit, so a chained step starts at once;
- and from a background relay thread that publishes what was delayed (waits and retry
  backoff stay in the database until due, never as broker ETAs, which Redis delivers twice
  when they exceed its visibility timeout) or could not be published (the broker was down).

A published message stays in the outbox until the delivery it caused deletes it, in the
transaction that records its outcome; one the broker lost is published again after
``redeliver_after``.

The Celery task ``squidmesh.perform`` calls :meth:`squidmesh_sdk.Client.perform`. It is
acknowledged late and rejected when its worker is lost, so a worker killed mid-step leaves
the message with the broker, which redelivers it; the runtime then takes over the step the
dead worker left running. Duplicate messages are harmless: the runtime ignores a delivery
whose work is done or under way.

Requires the ``celery`` extra: ``pip install 'squidmesh-sdk[celery]'``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Celery, Task, signals

from squidmesh_sdk import arguments, errors
from squidmesh_sdk.executors.outbox import OutboxRelay
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
from squidmesh_sdk.store import outbox as outbox_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["TASK_NAME", "CeleryExecutor"]

logger = logging.getLogger("squidmesh_sdk.celery")

TASK_NAME = "squidmesh.perform"
"""The name of the Celery task that performs squidmesh payloads."""

_MESSAGE_ID = "message_id"
"""The payload key of a message's own id (the outbox row's id can be reused on SQLite)."""
_PRIORITY = "broker_priority"
"""The payload key of a message's Celery priority (``CeleryExecutor(priority=...)``)."""
_MAX_RETRY_DELAY = 60.0
_NOT_HELD_RETRY_DELAY = 2.0
"""A task for a workflow or version this worker lacks goes back at once, without backoff: a
worker that holds it may be idle (route workflows to queues of their own to avoid the trip)."""
_BROKER_DOWN_PAUSE = 5.0
"""Seconds a process without a relay thread stops publishing after commit once the broker
refused a message, so that callers do not each wait for a connection attempt."""


class CeleryExecutor(QueueRouting):
    """Delivers step, compensation and cron work as Celery tasks.

    Args:
        app: The host's Celery application. The task :data:`TASK_NAME` is registered on it.
        queue: The Celery queue tasks are sent to.
        queue_for: Optional per-workflow routing: workflow name to queue name (``None`` keeps
            the default).
        relay_interval: Seconds between two passes of the background relay.
        priority: Maps a run's priority (-1000..1000, higher first) to the Celery message
            ``priority`` of its step and compensation tasks (``None`` from it: none sent).
            Without it no priority is sent. The scale is the broker's: RabbitMQ queues
            declared with ``x-max-priority`` run higher numbers first (0..255), the Redis
            transport runs *lower* numbers first (``priority_steps``, 0..9 by default), so no
            mapping fits both; see docs/workers.md, "Flow control".
        relay_lease: Seconds after which a message a relay took but neither published nor
            postponed (the relay died) is published again.
        redeliver_after: Seconds after which a message that was published but whose
            delivery has not finished is published again: the broker may have lost it. A
            step that runs longer gets a duplicate delivery, which does nothing.
        start_relay_in_workers: Start the background relay (and the cron scheduler) in every
            Celery worker of ``app``: in each pool child with the prefork pool, in the worker
            itself with the solo and threads pools. Other processes that should relay (a web
            app with no worker) call :meth:`start_relay`.
        cron: Also schedule the client's cron triggers from every Celery worker process of
            ``app`` (a thread ticking each second; however many workers run, each window
            starts one run).
        cron_catch_up: Windows missed while no worker ran: ``"latest"`` (the default) starts
            the most recent one, ``"all"`` each of them, ``"none"`` none.
        publish_on_commit: Publish new, due messages right after the commit that wrote them,
            from the committing thread. Without it only the background relay publishes.
    """

    writes_through_sqlalchemy = True
    """Writes the outbox with SQLAlchemy statements, which flush the pipeline themselves."""

    def __init__(
        self,
        app: Celery,
        *,
        queue: str = "squidmesh",
        queue_for: Callable[[str], str | None] | None = None,
        relay_interval: float = 1.0,
        relay_lease: float = 30.0,
        redeliver_after: float = 300.0,
        start_relay_in_workers: bool = True,
        publish_on_commit: bool = True,
        cron: bool = True,
        cron_catch_up: CatchUp = "latest",
        priority: Callable[[int], int | None] | None = None,
    ) -> None:
        super().__init__(queue=queue, queue_for=queue_for)
        # All checked before the app gets its task: a refused executor leaves it as it was.
        if not isinstance(app, Celery):
            raise errors.InvalidArgument("app", f"app must be a Celery app, got {app!r}")
        for option, seconds in (
            ("relay_interval", relay_interval),
            ("relay_lease", relay_lease),
            ("redeliver_after", redeliver_after),
        ):
            arguments.positive_seconds(option, seconds)
        arguments.catch_up("cron_catch_up", cron_catch_up)
        self._priority = priority
        self.app = app
        self._relay_interval = relay_interval
        self._relay_lease = relay_lease
        self._redeliver_after = redeliver_after
        self._publish_on_commit = publish_on_commit
        self._binding: ExecutorBinding | None = None
        self._relay: OutboxRelay | None = None
        self._scheduler: CronScheduler | None = None
        self._cron = cron
        self._cron_catch_up: CatchUp = cron_catch_up
        self._pid = os.getpid()
        self._skip_publishing_until = 0.0

        if TASK_NAME in app.tasks:
            raise errors.ExecutorNotReady(
                f"the Celery app {app.main!r} already has a {TASK_NAME!r} task: one "
                "CeleryExecutor per Celery app (create another Celery app for another client)"
            )

        def perform(
            task: Task[Any, Any], payload: Mapping[str, Any], outbox_id: int | None = None
        ) -> str:
            return self._perform(task, payload, outbox_id)

        self.task: Task[Any, Any] = app.task(
            name=TASK_NAME,
            shared=False,  # this app's task, bound to this executor, not every app's
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            # A hard time limit (or any failure the task did not turn into a retry) must not
            # acknowledge the message: the broker delivers it again and the step is taken over.
            acks_on_failure_or_timeout=False,
            ignore_result=True,
            max_retries=None,
        )(perform)
        # Weak receivers: an executor (and its client) that is dropped stops receiving them.
        self._relay_in_workers = start_relay_in_workers
        if start_relay_in_workers:
            signals.worker_ready.connect(self._on_worker_ready)
            signals.worker_shutdown.connect(self._on_worker_shutdown)
        signals.worker_process_init.connect(self._on_worker_process_init)

    def bind(self, binding: ExecutorBinding) -> None:
        """Remember the client this executor serves; its database holds the outbox."""
        self._binding = binding
        self._pid = os.getpid()
        self._relay = OutboxRelay(
            binding.database,
            binding.clock,
            self._publish,
            interval=self._relay_interval,
            lease=self._relay_lease,
            redeliver_after=self._redeliver_after,
        )
        if self._cron:
            self._scheduler = CronScheduler(binding.runtime, catch_up=self._cron_catch_up)

    @property
    def relay(self) -> OutboxRelay:
        """The outbox relay of this executor (available once a client is bound)."""
        if self._relay is None:
            raise RuntimeError("CeleryExecutor is not bound to a client yet")
        return self._relay

    @property
    def scheduler(self) -> CronScheduler | None:
        """The cron scheduler Celery workers of this app run (``None`` with ``cron=False``)."""
        return self._scheduler

    def start_relay(self) -> None:
        """Publish outbox messages from a background thread of this process."""
        self.relay.start()

    def stop_relay(self, timeout: float | None = 10.0) -> None:
        """Stop the background relay thread of this process, if running."""
        if self._relay is not None:
            self._relay.stop(timeout)

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        """Write one message per step to the outbox in ``tx``: all commit, or none."""
        queue = self.queue_of(run.workflow)
        messages = [
            outbox_store.NewMessage(
                queue,
                self._prioritised(payloads.step_payload(run.id, step), run),
                run_id=run.id,
                delay=schedule_in,
            )
            for step in steps
        ]
        return self._add(tx, messages)

    def _prioritised(self, payload: dict[str, Any], run: Run) -> dict[str, Any]:
        """``payload``, with the broker priority of the run's messages if there is one.

        Kept in the outbox row's payload (its JSON column) so that the relay, which publishes
        it later and maybe from another process, sends it with the message.
        """
        if self._priority is None:
            return payload
        mapped = self._priority(run.priority)
        return payload if mapped is None else {**payload, _PRIORITY: int(mapped)}

    def enqueue_compensation(self, tx: Transaction, run: Run) -> DispatchMetadata:
        """Write a compensation message to the outbox in ``tx``."""
        message = outbox_store.NewMessage(
            self.queue_of(run.workflow),
            self._prioritised(payloads.compensation_payload(run.id), run),
            run_id=run.id,
        )
        return self._add(tx, [message])[0]

    def enqueue_cron(
        self,
        tx: Transaction,
        workflow: str,
        trigger: str,
        *,
        signal: Mapping[str, Any] | None = None,
        schedule_in: float | None = None,
    ) -> DispatchMetadata:
        """Write a cron activation message to the outbox in ``tx``."""
        message = outbox_store.NewMessage(
            self.queue_of(workflow),
            payloads.cron_payload(workflow, trigger, signal),
            delay=schedule_in,
        )
        return self._add(tx, [message])[0]

    def _add(
        self, tx: Transaction, messages: list[outbox_store.NewMessage]
    ) -> list[DispatchMetadata]:
        # Each message gets an id of its own in its payload (``messaging.message.id`` on the
        # spans of both sides): SQLite reuses the outbox ids of deleted rows, so a row id does
        # not name one message for good.
        tokens = [uuid.uuid4().hex for _ in messages]
        messages = [
            dataclasses.replace(message, payload={**message.payload, _MESSAGE_ID: token})
            for message, token in zip(messages, tokens, strict=True)
        ]
        ids = outbox_store.add(tx, messages)
        due = [i for i, message in zip(ids, messages, strict=True) if not message.delay]
        if due and self._publish_on_commit:
            tx.after_commit(lambda: self._publish_after_commit(due))
        return [
            {
                "outbox_id": i,
                "message_id": token,
                "queue": message.destination,
                "schedule_in": message.delay,
            }
            for i, token, message in zip(ids, tokens, messages, strict=True)
        ]

    def _publish_after_commit(self, ids: list[int]) -> None:
        # The state change is committed: a failure here must not reach the caller. The
        # messages stay in the outbox and the background relay publishes them.
        relay = self.relay
        if relay.running:
            relay.wake()  # this process relays: never make the caller wait for the broker
            return
        if time.monotonic() < self._skip_publishing_until:
            return  # the broker was just unreachable: leave it to the relays
        try:
            if relay.relay(ids) < len(ids):
                self._skip_publishing_until = time.monotonic() + _BROKER_DOWN_PAUSE
        except Exception:
            logger.warning("publishing after commit failed; the relay will retry", exc_info=True)

    def _publish(self, message: outbox_store.Message) -> None:
        # One try: a broker that is down costs a caller one connection attempt, and the
        # relay retries the message with backoff.
        options: dict[str, Any] = {}
        priority = message.payload.get(_PRIORITY)
        if isinstance(priority, int):
            options["priority"] = priority
        self.task.apply_async(
            args=(dict(message.payload),),
            kwargs={"outbox_id": message.id},
            queue=message.destination,
            retry=False,
            **options,
        )

    def _perform(
        self, task: Task[Any, Any], payload: Mapping[str, Any], outbox_id: int | None
    ) -> str:
        binding = self._binding
        if binding is None:
            # The worker imported the executor but built no client: a deployment error that
            # a retry may outlive (a lazily built client), so the message is not dropped.
            raise task.retry(
                exc=RuntimeError("CeleryExecutor is not bound to a squidmesh Client"),
                countdown=_MAX_RETRY_DELAY,
            )
        runtime = binding.runtime
        request = task.request
        # Only the broker's redelivery of an unacknowledged message says that the worker that
        # had it is gone. A retry after an error does not: the message may be a duplicate
        # whose twin is running the step right now (a step left running by an error is taken
        # over after the client's stale_step_timeout instead).
        redelivered = bool((request.delivery_info or {}).get("redelivered"))
        token = payload.get(_MESSAGE_ID)
        token = token if isinstance(token, str) else None

        def settle(tx: Transaction) -> None:
            if outbox_id is not None:
                outbox_store.remove_delivered(tx, outbox_id, token)

        # The message's outbox row goes in the transaction that records the outcome.
        delivery = Delivery(
            reclaim=redelivered,
            settle=settle,
            queue=(request.delivery_info or {}).get("routing_key"),
            message_id=token or (str(outbox_id) if outbox_id is not None else request.id),
        )
        try:
            outcome = binding.deliver(payload, delivery=delivery)
        except PERMANENT_DELIVERY_ERRORS:
            logger.exception("dropping a squidmesh task that can never succeed")
            outcome = "rejected"
        except errors.InvalidWorkflow as exc:
            logger.info(
                "squidmesh task for a workflow or version this worker lacks; released",
                extra={"workflow": exc.workflow, "retry_in": _NOT_HELD_RETRY_DELAY},
            )
            raise task.retry(exc=exc, countdown=_NOT_HELD_RETRY_DELAY) from exc
        except Exception as exc:
            delay = min(_MAX_RETRY_DELAY, 2.0 ** (request.retries or 0))
            logger.warning(
                "squidmesh task failed; retrying",
                extra={"retries": request.retries, "retry_in": delay},
                exc_info=True,
            )
            raise task.retry(exc=exc, countdown=delay) from exc
        if outbox_id is not None and not delivery.settled:
            # Nothing recorded an outcome (a duplicate, a stale or rejected message): the
            # message has had its effect, and must not be published again.
            with runtime.transaction() as tx:
                settle(tx)
        return outcome

    def _on_worker_ready(self, sender: Any = None, **_: Any) -> None:
        if _app_of(sender) is not self.app or _is_prefork(getattr(sender, "pool", None)):
            return  # prefork: each pool child runs them (below), the parent stays out
        self._start_background()

    def _on_worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        if _app_of(sender) is self.app:
            self._stop_background()

    def _on_worker_process_init(self, **_: Any) -> None:
        binding = self._binding
        if binding is None or os.getpid() == self._pid:
            return  # not bound, or not a forked child (the solo pool sends this too)
        # A forked pool child must not use the parent's pooled connections: forget them
        # without closing them (closing would end the parent's sessions).
        binding.database.engine.dispose(close=False)
        self._pid = os.getpid()
        # The relay and the cron scheduler run in the pool's children, never in the parent
        # that forks them: a fork taken while a parent thread is inside a SQLite transaction
        # leaves the child unable to lock the database.
        if self._relay_in_workers:
            self._start_background()

    def _start_background(self) -> None:
        if self._relay is not None:
            self._relay.start()
        if self._scheduler is not None:
            self._scheduler.start()

    def _stop_background(self) -> None:
        self.stop_relay()
        if self._scheduler is not None:
            self._scheduler.stop()


def _app_of(sender: Any) -> Any:
    return getattr(sender, "app", None)


def _is_prefork(pool: Any) -> bool:
    return type(pool).__module__ == "celery.concurrency.prefork"
