"""The runtime's shared parts: database, workflows, executor, clock and observers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from squidmesh_sdk import errors
from squidmesh_sdk.clock import Clock, use_clock
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.port.executor import Executor
from squidmesh_sdk.runtime.events import Observer, RunEvent
from squidmesh_sdk.store import migrations
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["Runtime", "RuntimeOwner"]

logger = logging.getLogger("squidmesh_sdk.runtime")


@dataclass(slots=True, eq=False)
class Runtime:
    """Everything a runtime operation needs, shared by the client, the runner and the worker.

    Attributes:
        database: Where state lives.
        workflows: Workflow name to its current definition (new runs start on it).
        versions: Workflow name to every version of it held here, current one included
            (runs keep the version they started on).
        executor: How work is delivered.
        clock: The time source for timestamps, delays and payload defaults.
        observers: Receive events after each commit.
        stale_step_timeout: Seconds after which a delivery may take over a step still marked
            running (its worker presumed dead); ``None`` never takes over.
        before_commit: Called with each write transaction just before it commits (after its
            body succeeded): the client passes the hook that adds what runs' status changes
            imply, closing what a finished run left open and linking child runs to their
            parents (:func:`squidmesh_sdk.runtime.finishing.before_commit`).
    """

    database: Database
    workflows: Mapping[str, WorkflowDefinition]
    executor: Executor
    clock: Clock
    observers: tuple[Observer, ...] = ()
    stale_step_timeout: float | None = None
    versions: Mapping[str, Mapping[str, WorkflowDefinition]] = field(default_factory=dict)
    before_commit: Callable[[Runtime, Transaction], None] | None = None
    _schema_checked: bool = field(default=False, init=False)

    @property
    def holds(self) -> dict[str, tuple[str, ...]]:
        """Workflow name to the versions of it this runtime can run."""
        return {
            name: tuple(self.versions.get(name) or {current.version: current})
            for name, current in self.workflows.items()
        }

    def definition(self, name: str) -> WorkflowDefinition:
        """The compiled workflow called ``name``.

        Raises:
            InvalidWorkflow: this runtime was not given that workflow.
        """
        try:
            return self.workflows[name]
        except KeyError:
            raise errors.InvalidWorkflow(name, sorted(self.workflows)) from None

    def definition_of(self, run: Run) -> WorkflowDefinition:
        """The definition ``run`` is pinned to: the version it started on.

        A run written by a release that recorded no version is matched by its fingerprint.

        Raises:
            InvalidWorkflow: this runtime was not given the run's workflow at all.
            DefinitionUnavailable: it holds the workflow, but not the run's version.
        """
        current = self.definition(run.workflow)
        held = self.versions.get(run.workflow) or {current.version: current}
        wanted = run.definition_version
        if wanted is None:
            for definition in held.values():
                if definition.fingerprint == run.definition_fingerprint:
                    return definition
            wanted = "fp-" + run.definition_fingerprint.removeprefix("sha256:")[:16]
        found = held.get(wanted)
        if found is not None:
            return found
        raise errors.DefinitionUnavailable(run.workflow, wanted, tuple(held), run_id=run.id)

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction stamped with the clock's time; events are emitted after commit.

        The runtime's clock is also made current inside it, so payload defaults such as
        ``today()`` agree with the timestamps. ``before_commit`` runs after the block, in the
        transaction (an exception it raises rolls it back).
        """
        self.check_schema()
        return _RuntimeTransaction(self)

    def check_schema(self) -> None:
        """Fail clearly, once, unless the database is at this library's schema version.

        Raises:
            SchemaNotReady: the schema is missing or older than this library.
            SchemaTooNew: a newer release migrated the schema past this library's version.
        """
        if self._schema_checked:
            return
        with self.database.read() as connection:
            migrations.require_latest(connection)
        self._schema_checked = True

    def emit(self, events: Iterable[RunEvent]) -> None:
        """Hand events to every observer; an observer that raises is logged and skipped."""
        for event in events:
            for observer in self.observers:
                try:
                    observer.emit(event)
                except Exception:
                    logger.exception("observer failed", extra={"observer": type(observer).__name__})


class RuntimeOwner(Protocol):
    """What owns a runtime: :class:`squidmesh_sdk.Client`, as the worker and tools above see it.

    Code above the runtime that is handed "a client" types it with this, so that nothing below
    the client imports it.
    """

    @property
    def runtime(self) -> Runtime:
        """The runtime it owns."""
        ...


class _RuntimeTransaction:
    """One :meth:`Runtime.transaction` (a class, not a generator: one or more a step)."""

    __slots__ = ("_clock", "_runtime", "_tx", "_writing")

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._clock = use_clock(runtime.clock)
        self._writing = runtime.database.transaction(runtime.clock.now())

    def __enter__(self) -> Transaction:
        self._clock.__enter__()
        try:
            tx = self._writing.__enter__()
        except BaseException:
            self._clock.__exit__(None, None, None)
            raise
        # The events list, not the transaction: nothing refers back to it once it committed.
        tx.after_commit(functools.partial(self._runtime.emit, tx.events))
        self._tx = tx
        return tx

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            before_commit = self._runtime.before_commit
            if exc is None and before_commit is not None:
                try:
                    before_commit(self._runtime, self._tx)
                except BaseException as error:
                    self._writing.__exit__(type(error), error, error.__traceback__)
                    raise
            self._writing.__exit__(exc_type, exc, tb)
        finally:
            self._clock.__exit__(None, None, None)
