"""Statements on the hot path, compiled once per dialect and executed without rebuilding them.

Building a SQLAlchemy Core statement and computing its cache key costs far more than the
database work of a short primary-key update: measured on a 5-step workflow, statement
construction was over 90% of the time a step spent in the runtime. A :class:`Prepared`
statement is declared once with named bind parameters, compiled once per dialect, and then
executed on the connection's DBAPI cursor: the column types still convert values both ways
(UUIDs, JSON, aware datetimes), with the processors SQLAlchemy gives those types for the
dialect.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

__all__ = ["Prepared"]

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Bind:
    name: str
    process: Processor | None
    constant: bool  # a value written into the statement (``.values(status="running")``)
    value: Any


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    binds: tuple[_Bind, ...]
    results: tuple[tuple[str, Processor | None], ...] | None

    def parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values = {}
        for bind in self.binds:
            value = bind.value if bind.constant else params[bind.name]
            values[bind.name] = bind.process(value) if bind.process is not None else value
        return values


class Prepared:
    """A statement built by ``build`` once, then compiled once per dialect.

    Args:
        build: Returns the statement, with a ``sa.bindparam`` for every value passed at
            execution. Expanding ``IN`` parameters are not supported.
    """

    __slots__ = ("_build", "_compiled", "_lock")

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Execute with ``params``; return the rows as dicts of converted values."""
        compiled = self._compile(connection.dialect)
        raw_rows, _ = _run(connection, compiled.sql, compiled.parameters(params))
        converters = compiled.results
        if converters is None:
            return []
        return [
            {
                name: (process(value) if process is not None else value)
                for (name, process), value in zip(converters, row, strict=True)
            }
            for row in raw_rows
        ]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Execute; return the first row, or ``None``."""
        rows = self.rows(connection, params)
        return rows[0] if rows else None

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Execute a statement without result rows; return the number of rows it touched."""
        compiled = self._compile(connection.dialect)
        _, rowcount = _run(connection, compiled.sql, compiled.parameters(params))
        return rowcount

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is not None:
            return compiled
        with self._lock:
            compiled = _compile(self._build(dialect.name), dialect)
            self._compiled[dialect.name] = compiled
            return compiled


def _run(
    connection: Connection, sql: str, params: dict[str, Any]
) -> tuple[list[Sequence[Any]], int]:
    """Execute on the connection's DBAPI cursor, inside its current transaction.

    Going under SQLAlchemy's execution layer saves building a result object per statement.
    Statement listeners (``before_cursor_execute``) still see the statement, and driver errors
    are translated into SQLAlchemy's, as its own execution would: a lost connection is
    invalidated and reported as ``OperationalError`` with ``connection_invalidated`` set.
    """
    dialect = connection.dialect
    raw = connection.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - a connection in a transaction has its DBAPI connection
    cursor = raw.cursor()
    try:
        if connection.dispatch.before_cursor_execute:
            connection.dispatch.before_cursor_execute(connection, cursor, sql, params, None, False)
        cursor.execute(sql, params)
        rows = list(cursor.fetchall()) if cursor.description is not None else []
        return rows, cursor.rowcount
    except dialect.loaded_dbapi.Error as exc:
        disconnect = dialect.is_disconnect(exc, raw, cursor)
        if disconnect:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            params,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=disconnect,
            dialect=dialect,
        ) from exc
    finally:
        cursor.close()


def _compile(statement: ClauseElement, dialect: Dialect) -> _Compiled:
    # Named parameters let one dict serve every placeholder: pysqlite's default is positional
    # ("qmark"), so SQLite statements are compiled for its "named" style; psycopg's default
    # "pyformat" is already named.
    target = sqlite.dialect(paramstyle="named") if dialect.name == "sqlite" else dialect
    compiled = cast(SQLCompiler, statement.compile(dialect=target))
    binds = []
    for name, bind in compiled.binds.items():
        if bind.expanding:
            raise ValueError(f"prepared statements cannot expand IN parameters ({name})")
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        constant = not bind.required  # a value given when the statement was built
        value = bind.effective_value if constant else None
        binds.append(_Bind(name, process, constant, value))
    columns = list(getattr(statement, "exported_columns", ()))
    results = None
    if columns:
        results = tuple(
            (column.key, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in columns
        )
    return _Compiled(sql=str(compiled), binds=tuple(binds), results=results)
