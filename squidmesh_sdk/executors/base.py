"""The executor boundary: how runnable work leaves the runtime and comes back.

The runtime decides *what* runs next; an executor decides *how* it is delivered. Every method
is called inside the runtime's write transaction (``tx``), so an executor can make its job
durable with the state change that implies it: write a row on ``tx.connection`` (the built-in
database queue, a transactional outbox), or hand work over in ``tx.after_commit`` so that a
rolled-back change never runs. Whatever delivers the job later calls
:meth:`squidmesh_sdk.Client.perform` with the JSON payload built by
:mod:`squidmesh_sdk.executors.payloads`.

An executor method signals "I cannot take this work" by raising. The runtime then rolls back
(``start_run``, resumes) or marks the run failed in the same transaction (a successor that
could not be dispatched). A database error raised by the executor is not a refusal: it aborts
the whole transaction, and the delivery that caused it is retried by its queue.

On PostgreSQL the runtime may still hold statements in the connection's pipeline when it calls
an executor; SQLAlchemy statements send them first by themselves. An executor that uses the
driver's connection directly gets them sent before it is called, unless it declares the class
attribute ``writes_through_sqlalchemy = True`` (it uses ``tx.connection`` only through
SQLAlchemy, or not at all), which saves that round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from squidmesh_sdk import errors
from squidmesh_sdk.clock import Clock
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.records import Run

if TYPE_CHECKING:
    from squidmesh_sdk.client import Client

__all__ = [
    "PERMANENT_DELIVERY_ERRORS",
    "DispatchMetadata",
    "Executor",
    "ExecutorBinding",
    "Perform",
    "QueueRouting",
]

PERMANENT_DELIVERY_ERRORS: tuple[type[Exception], ...] = (
    errors.InvalidExecutorPayload,
    errors.InvalidRunId,
    errors.RunNotFound,
)
"""What ``perform`` raises for a delivery that no retry can fix (a malformed payload, a run
that does not exist). Any other exception is worth retrying: the database is away, or
(``InvalidWorkflow``) a worker still runs the previous deploy's code and a newer one knows the
workflow."""

DispatchMetadata = Mapping[str, Any]
"""What an executor reports about a job it accepted (``job_id``, ``queue``, ...)."""


class Perform(Protocol):
    """The signature of :meth:`squidmesh_sdk.Client.perform`."""

    def __call__(self, payload: Mapping[str, Any], *, redelivered: bool = False) -> str:
        """Execute one delivered payload; ``redelivered``: its previous delivery was lost."""
        ...


@dataclass(frozen=True, slots=True)
class ExecutorBinding:
    """What the client hands its executor: the way back in, the clock and the database.

    Attributes:
        perform: Executes one delivered payload (:meth:`squidmesh_sdk.Client.perform`).
        clock: The clock the runtime stamps and schedules with.
        database: The database the runtime keeps runs in (an outbox relay reads it).
        client: The client itself (an executor whose workers schedule cron triggers needs it).
    """

    perform: Perform
    clock: Clock
    database: Database
    client: Client


@runtime_checkable
class Executor(Protocol):
    """Delivers step, compensation and cron work back to ``perform``.

    ``schedule_in`` is a delay in seconds (``None`` or absent: deliver as soon as possible).
    """

    def bind(self, binding: ExecutorBinding) -> None:
        """Called once by the client that owns this executor."""
        ...

    def enqueue_step(
        self, tx: Transaction, run: Run, step: str, *, schedule_in: float | None = None
    ) -> DispatchMetadata:
        """Queue one step of ``run``."""
        ...

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        """Queue several steps of ``run`` at once: all of them or, by raising, none."""
        ...

    def enqueue_compensation(self, tx: Transaction, run: Run) -> DispatchMetadata:
        """Queue the saga rollback of a failed run."""
        ...

    def enqueue_cron(
        self,
        tx: Transaction,
        workflow: str,
        trigger: str,
        *,
        signal: Mapping[str, Any] | None = None,
        schedule_in: float | None = None,
    ) -> DispatchMetadata:
        """Queue the activation of a cron trigger (``signal``: schedule identity)."""
        ...


class QueueRouting:
    """Named queues and per-workflow routing, shared by the executors that have queues.

    Args:
        queue: The queue jobs go to.
        queue_for: Optional per-workflow routing: workflow name to queue name (``None`` keeps
            the default), so that some workflows can get workers of their own.
    """

    def __init__(self, *, queue: str, queue_for: Callable[[str], str | None] | None) -> None:
        if not queue:
            raise ValueError("queue must be a non-empty name")
        self.queue = queue
        self._queue_for = queue_for

    def queue_of(self, workflow: str) -> str:
        """The queue a workflow's jobs go to."""
        routed = self._queue_for(workflow) if self._queue_for is not None else None
        return routed or self.queue

    def enqueue_step(
        self, tx: Transaction, run: Run, step: str, *, schedule_in: float | None = None
    ) -> DispatchMetadata:
        """Queue one step of ``run``: a batch of one."""
        return self.enqueue_steps(tx, run, [step], schedule_in=schedule_in)[0]

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        """Queue several steps of ``run`` at once: all of them or, by raising, none."""
        raise NotImplementedError
