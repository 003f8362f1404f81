"""The executor boundary: how runnable work leaves the runtime and comes back.

The runtime decides *what* runs next; an executor decides *how* it is delivered. Every method
is called inside the runtime's write transaction (``tx``), so an executor can make its job
durable with the state change that implies it: write a row on ``tx.connection`` (the built-in
database queue, a transactional outbox), or hand work over in ``tx.after_commit`` so that a
rolled-back change never runs. Whatever delivers the job later calls
:meth:`squidmesh_sdk.Client.perform` with the JSON payload built by
:mod:`squidmesh_sdk.port.payloads`.

This module, with the rest of :mod:`squidmesh_sdk.port`, sits *below* the runtime: the runtime
depends on it, the concrete executors in :mod:`squidmesh_sdk.executors` implement it, and
:class:`squidmesh_sdk.Client` wires the two together. It imports nothing above the store.

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

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from squidmesh_sdk import errors
from squidmesh_sdk.clock import Clock
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.records import Run

__all__ = [
    "PERMANENT_DELIVERY_ERRORS",
    "Deliver",
    "DispatchMetadata",
    "Executor",
    "ExecutorBinding",
    "Perform",
    "RuntimeView",
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


class Deliver(Protocol):
    """Execute one delivered payload with the part its queue plays in it (:class:`Delivery`).

    For queues that settle their job in the transaction that records the step's outcome (an
    outbox row removed with it), or that know the previous delivery was lost.
    """

    def __call__(self, payload: Mapping[str, Any], *, delivery: Delivery | None = None) -> str:
        """Execute ``payload``; see :meth:`squidmesh_sdk.Client.perform` for the outcomes."""
        ...


class RuntimeView(Protocol):
    """The runtime as an executor sees it (:class:`squidmesh_sdk.runtime.core.Runtime`).

    Executors whose workers do more than perform payloads (schedule cron triggers, settle an
    outbox row with a step's outcome) reach the runtime through this, never through the
    client or a concrete runtime class above them.
    """

    @property
    def clock(self) -> Clock:
        """The time source the runtime stamps and schedules with."""
        ...

    @property
    def database(self) -> Database:
        """The database runs are kept in."""
        ...

    @property
    def workflows(self) -> Mapping[str, WorkflowDefinition]:
        """Workflow name to compiled definition."""
        ...

    @property
    def executor(self) -> Executor:
        """The executor the runtime dispatches through."""
        ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction stamped with the clock's time."""
        ...


@dataclass(frozen=True, slots=True)
class ExecutorBinding:
    """What the client hands its executor: the way back in, and the runtime it serves.

    Attributes:
        perform: Executes one delivered payload (:meth:`squidmesh_sdk.Client.perform`).
        deliver: Executes one delivered payload with its queue's :class:`Delivery`.
        runtime: The runtime the executor serves: its clock, database, workflows and
            transactions (a cron scheduler in the executor's workers needs them).
    """

    perform: Perform
    deliver: Deliver
    runtime: RuntimeView

    @property
    def clock(self) -> Clock:
        """The clock the runtime stamps and schedules with."""
        return self.runtime.clock

    @property
    def database(self) -> Database:
        """The database the runtime keeps runs in (an outbox relay reads it)."""
        return self.runtime.database


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
