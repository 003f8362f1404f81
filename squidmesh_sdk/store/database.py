"""Engine set-up and transactions for SQLite and PostgreSQL.

SQLite gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE`` for every write
transaction. A deferred ``BEGIN`` that later writes can fail at once with "database is locked"
when another connection wrote in between; an immediate one takes the write lock up front and
waits for it (up to the busy timeout), so concurrent writers queue instead of failing.

Write transactions run on a connection the thread keeps between transactions (when the engine
is ours): checking a connection out of SQLAlchemy's pool and back in again (with its reset)
took a fifth of the CPU a workflow step spends in this process.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from squidmesh_sdk import errors
from squidmesh_sdk.store import json_text, prepared, sending
from squidmesh_sdk.store.write_gate import WriteGate, gate_for

__all__ = ["Database", "Transaction", "upsert"]

SqliteSynchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

_BEGIN_OPTION = "squidmesh_begin"
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass(slots=True, eq=False)
class Transaction:
    """An open write transaction and what must happen once it commits.

    Attributes:
        connection: The SQLAlchemy connection the transaction runs on.
        now: The time the transaction started, from the runtime's clock; every timestamp it
            writes uses it, so one change has one time.
        events: What the transaction did, for telemetry; reported only once it commits.
    """

    connection: Connection
    now: datetime
    events: list[Any] = field(default_factory=list)
    _after_commit: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after a successful commit (never after a rollback)."""
        self._after_commit.append(callback)

    def run_after_commit(self) -> None:
        """Run the after-commit callbacks, once: call it when the transaction has committed.

        The list is let go first: callbacks are often closures over this transaction, and
        dropping them here frees the pair by reference counting instead of leaving a cycle
        to the garbage collector (one per step, with the records it holds).
        """
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()


class Database:
    """The database squidmesh keeps its state in: the host's own, or an embedded SQLite file.

    Args:
        target: A SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``) or an
            ``Engine``. An engine given here is used as is, except that a SQLite engine gets the
            connection settings above; give it before it opens its first connection.
            With a URL, each thread that writes keeps one connection of its own, outside the
            engine's pool, until the thread ends or :meth:`dispose` is called; an engine given
            here lends a pooled connection to every transaction instead.
        busy_timeout: SQLite only: seconds a writer waits for squidmesh's write gate (see
            :mod:`squidmesh_sdk.store.write_gate`), and then for the write lock: a writer that
            another one keeps waiting fails with "database is locked" after at most twice it.
        sqlite_synchronous: SQLite only: ``PRAGMA synchronous``. ``FULL`` (the default) makes
            every commit durable across power loss; ``NORMAL`` is faster and still safe against
            application crashes.

    Raises:
        InvalidArgument: (also a ``ValueError``) a target that is not a database URL, a
            database other than SQLite or PostgreSQL, a driver that is not installed, an
            in-memory SQLite URL (each connection would see its own database), or a bad
            ``busy_timeout`` (0 to 86,400 seconds) or ``sqlite_synchronous``.
    """

    def __init__(
        self,
        target: str | sa.URL | Engine,
        *,
        busy_timeout: float = 30.0,
        sqlite_synchronous: SqliteSynchronous = "FULL",
    ) -> None:
        if sqlite_synchronous not in _SYNCHRONOUS:
            raise errors.InvalidArgument(
                "sqlite_synchronous",
                f"sqlite_synchronous must be one of {', '.join(_SYNCHRONOUS)}, "
                f"got {sqlite_synchronous!r}",
            )
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, int | float)
            or not 0 <= busy_timeout <= MAX_BUSY_TIMEOUT
        ):
            raise errors.InvalidArgument(
                "busy_timeout",
                f"busy_timeout must be a number of seconds from 0 to {MAX_BUSY_TIMEOUT:.0f}, "
                f"got {busy_timeout!r}",
            )
        if isinstance(target, Engine):
            self.engine = target
            self._owns_engine = False
        else:
            self.engine = _engine_for(target)
            self._owns_engine = True
        self.dialect: str = self.engine.dialect.name
        self._gate: WriteGate | None = None
        self._busy_timeout = busy_timeout
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, busy_timeout, sqlite_synchronous)
            path = self.engine.url.database
            if path and path != ":memory:" and not path.startswith("file:"):
                self._gate = gate_for(path)
        elif self.dialect == "postgresql":
            if not sa.event.contains(self.engine, "before_execute", _flush_before_execute):
                sa.event.listen(self.engine, "before_execute", _flush_before_execute)
            if self._owns_engine and self.engine.driver == "psycopg":
                _read_json_with_json_text(self.engine)
        self._kept = _KeptConnections(self.engine) if self._owns_engine else None

    def transaction(self, now: datetime) -> AbstractContextManager[Transaction]:
        """Open a write transaction; commit on success, then run the after-commit callbacks.

        The block's exception, or a failure to commit, rolls the transaction back, closes its
        connection and runs no callback.

        Args:
            now: The time to stamp on everything the transaction writes (aware; kept in UTC).

        Raises:
            ValueError: ``now`` is a naive datetime.
        """
        if now.tzinfo is None:
            raise ValueError(f"naive datetime {now!r}: transactions are stamped in aware UTC")
        return _Writing(
            self.engine, self._kept, self._gate, self._busy_timeout, now.astimezone(UTC)
        )

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Open a read-only transaction that sees one snapshot of the database.

        A run read with its history takes several queries; they must agree with each other
        even while workers write. SQLite's deferred ``BEGIN`` reads one snapshot; PostgreSQL
        needs ``REPEATABLE READ`` for that (its default, ``READ COMMITTED``, takes a new
        snapshot per statement).
        """
        with self.engine.connect() as connection:
            options: dict[str, Any] = {_BEGIN_OPTION: "BEGIN"}
            if self.dialect == "postgresql":
                options["isolation_level"] = "REPEATABLE READ"
            connection = connection.execution_options(**options)
            with connection.begin():
                yield connection

    def dispose(self) -> None:
        """Close pooled connections of an engine this object created, and kept ones.

        On SQLite the write gate's file is closed too, unless a writer of this process is at
        the gate (it opens again with the next write).
        """
        if self._gate is not None:
            self._gate.close()
        if self._kept is not None:
            self._kept.close_idle()
        if self._owns_engine:
            self.engine.dispose()


class _Writing:
    """One write transaction (:meth:`Database.transaction`).

    A class rather than a ``@contextmanager`` generator: a step opens one or more, and a
    generator, its frame and ``contextlib``'s wrapper cost more than some of its statements.
    What it does, in order:

    - enter: a connection (the thread's kept one, or the engine's), through the SQLite file's
      write gate (:mod:`.write_gate`), then ``BEGIN`` (SQLAlchemy's transaction, entered as a
      ``with`` block would);
    - exit after the block: the statements still held in a pipeline are sent (a failure rolls
      back), then SQLAlchemy's transaction exits (commit, or rollback on an exception), the
      connection goes back (kept) or is closed, the gate lets the next writer through, and
      the after-commit callbacks run;
    - exit on an exception, or when sending or committing fails: held statements dropped,
      rolled back, the connection closed (a connection that failed is not worth keeping), the
      gate opened, no callback run.
    """

    __slots__ = (
        "_begun",
        "_connection",
        "_engine",
        "_gate",
        "_generation",
        "_kept",
        "_now",
        "_past",
        "_timeout",
        "_tx",
    )

    def __init__(
        self,
        engine: Engine,
        kept: _KeptConnections | None,
        gate: WriteGate | None,
        timeout: float,
        now: datetime,
    ) -> None:
        self._engine = engine
        self._kept = kept
        self._gate = gate
        self._timeout = timeout
        self._now = now

    def __enter__(self) -> Transaction:
        if self._kept is None:
            connection = self._engine.connect()
        else:
            connection, self._generation = self._kept.take()
        gate = self._gate
        self._past = False
        try:
            # Through the gate once the connection is in hand: a wait for one from a host's
            # pool must not keep every other writer waiting at the gate.
            if gate is not None:
                self._past = gate.enter(self._timeout)
            begun = connection.begin()
            begun.__enter__()
        except BaseException:
            try:
                if self._past:
                    gate.leave()  # type: ignore[union-attr]
            finally:
                connection.close()
            raise
        self._connection, self._begun = connection, begun
        self._tx = Transaction(connection, self._now)
        return self._tx

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._connection
        try:
            try:
                if exc is None:
                    try:
                        prepared.flush(connection)
                    except BaseException as error:
                        prepared.discard(connection)
                        self._begun.__exit__(type(error), error, error.__traceback__)
                        raise
                else:
                    prepared.discard(connection)
                self._begun.__exit__(exc_type, exc, tb)
            except BaseException:
                connection.close()
                raise
            if exc is not None:
                connection.close()  # rolled back; the exception goes on
                return
            if self._kept is None:
                connection.close()
            else:
                self._kept.give_back(connection, self._generation)
        finally:
            if self._past:
                self._gate.leave()  # type: ignore[union-attr]
        # The connection and the gate are free again before callbacks run: they may open their
        # own transactions (an in-process executor runs the next step right here).
        self._tx.run_after_commit()


def _flush_before_execute(connection: Connection, *_args: Any) -> None:
    # Statements SQLAlchemy executes must not run inside a pipeline: it reads their results
    # as soon as they are executed. (Prepared statements do not come through here.)
    prepared.flush(connection)


class _Slot:
    """Where one thread keeps its idle connection (and the generation it was opened in)."""

    __slots__ = ("__weakref__", "kept")

    def __init__(self) -> None:
        self.kept: list[tuple[Connection, int]] = []


class _KeptConnections:
    """One idle connection per thread, outside the pool, closed when the thread ends.

    A thread takes its connection for a transaction and gives it back after; a transaction
    opened while another one is open on the same thread (a step that starts a run, say) gets
    a connection of its own. :meth:`close_idle` closes every idle connection and makes those
    in use be closed when they come back. A forked child process forgets the parent's
    connections without closing them (closing would end the parent's sessions).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._generation = 0
        self._reset()
        os.register_at_fork(after_in_child=functools.partial(_forget_after_fork, weakref.ref(self)))

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._slots: weakref.WeakSet[_Slot] = weakref.WeakSet()

    def take(self) -> tuple[Connection, int]:
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is not None and slot.kept:
            with self._lock:
                if slot.kept:
                    connection, generation = slot.kept.pop()
                    if not (connection.closed or connection.invalidated):
                        return connection, generation
                    connection.close()
        connection = self._engine.connect()
        # Out of the pool for good: it counts against no pool limit and closes for real.
        connection.detach()
        return connection, self._generation

    def give_back(self, connection: Connection, generation: int) -> None:
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = _Slot()
            # The thread's locals go when it ends: its connection is closed then.
            weakref.finalize(slot, _close_all, slot.kept, self._lock, self._pid)
            with self._lock:
                self._slots.add(slot)
        with self._lock:
            if not slot.kept and generation == self._generation and not connection.invalidated:
                slot.kept.append((connection, generation))
                return
        connection.close()

    def close_idle(self) -> None:
        with self._lock:
            self._generation += 1
            idle = [kept for slot in list(self._slots) for kept in slot.kept]
            for slot in list(self._slots):
                slot.kept.clear()
        for connection, _ in idle:
            connection.close()

    def forget(self) -> None:
        """In a forked child: start afresh, leaving the parent's connections untouched."""
        # Kept referenced forever, so that no finalizer ever runs on them in this process.
        _FORGOTTEN.append((self._local, list(self._slots)))
        self._generation += 1
        self._reset()


_FORGOTTEN: list[object] = []


def _forget_after_fork(kept: weakref.ref[_KeptConnections]) -> None:
    target = kept()
    if target is not None:
        target.forget()


MAX_BUSY_TIMEOUT = 86400.0
"""The longest a SQLite writer may wait for the lock, in seconds: a day (SQLite takes it in
milliseconds, as a 32-bit integer)."""

_URL_EXAMPLES = "sqlite:///path/to/app.db or postgresql+psycopg://user:password@host/dbname"


def _engine_for(target: str | sa.URL) -> Engine:
    """The engine of a database URL; ``InvalidArgument`` naming what is wrong with it."""
    try:
        url = sa.make_url(target)
    except sa.exc.ArgumentError:
        raise errors.InvalidArgument(
            "database", f"{target!r} is not a database URL: use {_URL_EXAMPLES}"
        ) from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise errors.InvalidArgument(
            "database",
            f"squidmesh keeps its state in SQLite or PostgreSQL, not {backend!r}: use "
            f"{_URL_EXAMPLES}",
        )
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise errors.InvalidArgument(
            "database",
            "an in-memory SQLite database cannot be shared by connections; use a file, e.g. "
            "sqlite:///squidmesh.db",
        )
    try:
        return sa.create_engine(url)
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise errors.InvalidArgument(
            "database",
            f"cannot load the driver of {url.drivername!r} ({exc}); PostgreSQL is reached with "
            "psycopg 3 (pip install 'psycopg[binary]'): postgresql+psycopg://...",
        ) from exc


def _close_all(kept: list[tuple[Connection, int]], lock: threading.Lock, pid: int) -> None:
    if os.getpid() != pid:
        return  # a forked child: these are the parent's connections
    with lock:
        idle = list(kept)
        kept.clear()
    for connection, _ in idle:
        connection.close()


def _configure_sqlite(engine: Engine, busy_timeout: float, synchronous: SqliteSynchronous) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    raw_errors = engine.dialect.loaded_dbapi.Error

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Straight to the driver: this runs for every transaction.
        raw = connection.connection.dbapi_connection
        assert raw is not None  # noqa: S101 - a connection that begins has a DBAPI connection
        begin = connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN IMMEDIATE")
        try:
            raw.execute(begin)
        except raw_errors as exc:
            # Raised from an event, the driver's error would reach the caller as it is, where
            # every other statement's is SQLAlchemy's: a worker that retries a locked or
            # unreachable database (``OperationalError``) would take it for a bug instead.
            raise sending.driver_error(connection, exc, begin, None) from exc


def _read_json_with_json_text(engine: Engine) -> None:
    """Have psycopg read ``json`` and ``jsonb`` with ``json_text`` on the engine's connections.

    The same values and errors as psycopg's default, ``json.loads``, with less work. Only on an
    engine squidmesh made, and only where psycopg's loader is still its default: a JSON
    function the host registered with psycopg (``set_json_loads``) is kept.
    """
    import psycopg  # installed where this driver is used
    from psycopg.types.json import set_json_loads

    jsonb = psycopg.postgres.types["jsonb"].oid

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        loader = dbapi_connection.adapters.get_loader(jsonb, psycopg.pq.Format.TEXT)
        if getattr(loader, "_loads", None) is json.loads:
            set_json_loads(json_text.loads_bytes, dbapi_connection)


def upsert(dialect: str, table: sa.Table) -> Any:
    """An ``INSERT`` for ``table`` that offers ``on_conflict_do_*`` on ``dialect``."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
