"""Engine set-up and transactions for SQLite and PostgreSQL.

SQLite gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE`` for every write
transaction. A deferred ``BEGIN`` that later writes can fail at once with "database is locked"
when another connection wrote in between; an immediate one takes the write lock up front and
waits for it (up to the busy timeout), so concurrent writers queue instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

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


class Database:
    """The database squidmesh keeps its state in: the host's own, or an embedded SQLite file.

    Args:
        target: A SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``) or an
            ``Engine``. An engine given here is used as is, except that a SQLite engine gets the
            connection settings above; give it before it opens its first connection.
        busy_timeout: SQLite only: seconds a writer waits for the write lock.
        sqlite_synchronous: SQLite only: ``PRAGMA synchronous``. ``FULL`` (the default) makes
            every commit durable across power loss; ``NORMAL`` is faster and still safe against
            application crashes.

    Raises:
        ValueError: an in-memory SQLite URL (each connection would see its own database).
    """

    def __init__(
        self,
        target: str | sa.URL | Engine,
        *,
        busy_timeout: float = 30.0,
        sqlite_synchronous: SqliteSynchronous = "FULL",
    ) -> None:
        if sqlite_synchronous not in _SYNCHRONOUS:
            raise ValueError(f"sqlite_synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        if isinstance(target, Engine):
            self.engine = target
            self._owns_engine = False
        else:
            url = sa.make_url(target)
            if url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
                raise ValueError(
                    "an in-memory SQLite database cannot be shared by connections; "
                    "use a file, e.g. sqlite:///squidmesh.db"
                )
            self.engine = sa.create_engine(url)
            self._owns_engine = True
        self.dialect: str = self.engine.dialect.name
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine, busy_timeout, sqlite_synchronous)

    @contextmanager
    def transaction(self, now: datetime) -> Iterator[Transaction]:
        """Open a write transaction; commit on success, then run the after-commit callbacks.

        Args:
            now: The time to stamp on everything the transaction writes (aware; kept in UTC).

        Raises:
            ValueError: ``now`` is a naive datetime.
        """
        if now.tzinfo is None:
            raise ValueError(f"naive datetime {now!r}: transactions are stamped in aware UTC")
        with self.engine.connect() as connection:
            tx = Transaction(connection, now.astimezone(UTC))
            with connection.begin():
                yield tx
        # The connection is back in the pool before callbacks run: they may open their own
        # transactions (an in-process executor runs the next step right here).
        for callback in tx._after_commit:
            callback()

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
        """Close pooled connections of an engine this object created."""
        if self._owns_engine:
            self.engine.dispose()


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

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Straight to the driver: this runs for every transaction.
        raw = connection.connection.dbapi_connection
        assert raw is not None  # noqa: S101 - a connection that begins has a DBAPI connection
        raw.execute(connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN IMMEDIATE"))


def upsert(dialect: str, table: sa.Table) -> Any:
    """An ``INSERT`` for ``table`` that offers ``on_conflict_do_*`` on ``dialect``."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
