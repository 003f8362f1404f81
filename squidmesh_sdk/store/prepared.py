"""Statements on the hot path, compiled once per dialect and executed without rebuilding them.

Building a SQLAlchemy Core statement and computing its cache key costs far more than the
database work of a short primary-key update: measured on a 5-step workflow, statement
construction was over 90% of the time a step spent in the runtime. A :class:`Prepared`
statement is declared once with named bind parameters, compiled once per dialect
(:mod:`~squidmesh_sdk.store.compiled`), and then sent on the connection's DBAPI cursor
(:mod:`~squidmesh_sdk.store.sending`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.elements import ClauseElement

from squidmesh_sdk.store import sending
from squidmesh_sdk.store.compiled import Compiled, compile_statement
from squidmesh_sdk.store.sending import HOLDS_BACK, discard, flush

__all__ = ["Prepared", "discard", "flush"]


class Prepared:
    """A statement built by ``build`` once, then compiled once per dialect.

    Args:
        build: Returns the statement, with a ``sa.bindparam`` for every value passed at
            execution. Expanding ``IN`` parameters are not supported.
    """

    __slots__ = ("_build", "_compiled", "_lock")

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, Compiled] = {}
        self._lock = threading.Lock()

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Execute with ``params``; return the rows as dicts of converted values.

        Id columns come back as canonical UUID strings.
        """
        compiled = self._compiled.get(connection.dialect.name) or self._compile(connection.dialect)
        raw_rows, _ = sending.run(
            connection, compiled, compiled.parameters(params), fetch=compiled.columns is not None
        )
        return compiled.convert(raw_rows)

    def first(self, connection: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Execute; return the first row, or ``None``."""
        rows = self.rows(connection, params)
        return rows[0] if rows else None

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Execute a statement without result rows; return the number of rows it touched."""
        compiled = self._compiled.get(connection.dialect.name) or self._compile(connection.dialect)
        # Rows a statement returns are still fetched: SQLite finishes a statement only then.
        fetch = compiled.columns is not None
        _, rowcount = sending.run(connection, compiled, compiled.parameters(params), fetch=fetch)
        return rowcount

    def rows_later(
        self, connection: Connection, params: Mapping[str, Any]
    ) -> Callable[[], list[dict[str, Any]]]:
        """Execute now; the rows come from the returned function.

        On PostgreSQL the statement joins the pipeline (see :meth:`send`), so statements sent
        after it travel with it; calling the function sends them all and returns its rows.
        """
        compiled = self._compiled.get(connection.dialect.name) or self._compile(connection.dialect)
        if connection.dialect.name != HOLDS_BACK:
            rows = self.rows(connection, params)
            return lambda: rows
        fetch = sending.run_later(connection, compiled, compiled.parameters(params))
        return lambda: compiled.convert(fetch())

    def send(
        self,
        connection: Connection,
        params: Mapping[str, Any],
        check: Callable[[int], None] | None = None,
    ) -> None:
        """Execute a statement without result rows whose outcome the caller needs only later.

        On PostgreSQL the statement is held back, and goes to the server with the next
        statement that needs a result, or with :func:`flush`, saving a round trip each; held
        statements on different tables are fused with each other and with that next
        statement into one (:mod:`~squidmesh_sdk.store.fusion`), saving the server and the
        driver a statement each.
        :class:`~squidmesh_sdk.store.database.Database` flushes before every statement
        SQLAlchemy executes (``Connection.execute`` and the like, not ``exec_driver_sql``),
        before the transaction commits, and the dispatcher before handing work to an
        executor other than the database queue. ``check`` then receives the statement's row
        count, and may raise; rows the statement returns are dropped. On SQLite the statement
        runs at once.
        """
        compiled = self._compiled.get(connection.dialect.name) or self._compile(connection.dialect)
        if connection.dialect.name != HOLDS_BACK:
            count = self.execute(connection, params)
            if check is not None:
                check(count)
            return
        sending.hold(connection, compiled, compiled.parameters(params), check)

    def _compile(self, dialect: Dialect) -> Compiled:
        # Called when the lookup the entry points make themselves missed (looking up first
        # saves every statement a call); looked up again under the lock, so that threads that
        # missed together compile once.
        with self._lock:
            compiled = self._compiled.get(dialect.name)
            if compiled is None:
                compiled = self._compiled[dialect.name] = compile_statement(
                    self._build(dialect.name), dialect
                )
            return compiled
