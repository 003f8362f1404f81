"""Statements on the hot path, compiled once per dialect and executed without rebuilding them.

Building a SQLAlchemy Core statement and computing its cache key costs far more than the
database work of a short primary-key update: measured on a 5-step workflow, statement
construction was over 90% of the time a step spent in the runtime. A :class:`Prepared`
statement is declared once with named bind parameters, compiled once per dialect, and then
executed on the connection's DBAPI cursor: the column types still convert values both ways
(JSON, aware datetimes), with the processors SQLAlchemy gives those types for the dialect.

Ids and times, the values every hot statement carries, get converters of their own, because
SQLAlchemy's went through ``uuid.UUID`` and a regular expression for each value (a fifth of a
step's time in a profile): ids are taken as canonical strings or ``uuid.UUID`` and always come
back as canonical strings (``"0190e3a4-..."``), which is what every record holds; SQLite times
are written and parsed in the same text format SQLAlchemy uses.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql import visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeEngine

from squidmesh_sdk.store import fusion
from squidmesh_sdk.store.types import UTCDateTime

__all__ = ["Prepared", "discard", "flush"]

Processor = Callable[[Any], Any]

_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed by identity
class _Compiled:
    sql: str
    constants: Mapping[str, Any]
    """Values written into the statement (``.values(status="running")``), already converted."""
    variables: tuple[tuple[str, str, Processor | None], ...]
    """``(name in the SQL, key in the caller's parameters, converter)`` of every other value."""
    columns: tuple[str, ...] | None
    converters: tuple[tuple[str, Processor], ...]
    """Result columns whose non-NULL values need converting."""
    tables: frozenset[str]
    """Every table the statement reads or writes."""
    parts: fusion.Parts | None
    """The statement taken apart for fusing (PostgreSQL), or ``None`` if it cannot be."""

    def convert(self, raw_rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        columns = self.columns
        if columns is None:
            return []
        converters = self.converters
        rows = []
        for raw in raw_rows:
            row = dict(zip(columns, raw, strict=True))
            for name, process in converters:
                value = row[name]
                if value is not None:
                    row[name] = process(value)
            rows.append(row)
        return rows

    def parameters(self, params: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(self.constants)
        for name, key, process in self.variables:
            value = params[key]
            values[name] = process(value) if process is not None else value
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
        """Execute with ``params``; return the rows as dicts of converted values.

        Id columns come back as canonical UUID strings.
        """
        compiled = self._compile(connection.dialect)
        raw_rows, _ = _run_held(
            connection, compiled, compiled.parameters(params), fetch=compiled.columns is not None
        )
        return compiled.convert(raw_rows)

    def first(self, connection: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Execute; return the first row, or ``None``."""
        rows = self.rows(connection, params)
        return rows[0] if rows else None

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> int:
        """Execute a statement without result rows; return the number of rows it touched."""
        compiled = self._compile(connection.dialect)
        # Rows a statement returns are still fetched: SQLite finishes a statement only then.
        fetch = compiled.columns is not None
        _, rowcount = _run_held(connection, compiled, compiled.parameters(params), fetch=fetch)
        return rowcount

    def rows_later(
        self, connection: Connection, params: Mapping[str, Any]
    ) -> Callable[[], list[dict[str, Any]]]:
        """Execute now; the rows come from the returned function.

        On PostgreSQL the statement joins the pipeline (see :meth:`send`), so statements sent
        after it travel with it; calling the function sends them all and returns its rows.
        """
        compiled = self._compile(connection.dialect)
        if connection.dialect.name != "postgresql":
            rows = self.rows(connection, params)
            return lambda: rows
        _release(connection)
        cursor = _pipelined(connection, _FETCHED_LATER)
        _execute(connection, cursor, compiled.sql, compiled.parameters(params))

        def fetch() -> list[dict[str, Any]]:
            flush(connection)
            try:
                raw_rows = cursor.fetchall()
            except connection.dialect.loaded_dbapi.Error as exc:
                raise _translate(connection, exc, cursor, compiled.sql, {}) from exc
            finally:
                cursor.close()
            return compiled.convert(raw_rows)

        return fetch

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
        compiled = self._compile(connection.dialect)
        if connection.dialect.name != "postgresql":
            count = self.execute(connection, params)
            if check is not None:
                check(count)
            return
        values = compiled.parameters(params)
        if compiled.parts is not None:
            connection.info.setdefault(_HELD, []).append(_Held(compiled, values, check))
            return
        _release(connection)
        cursor = _pipelined(connection, check)
        _execute(connection, cursor, compiled.sql, values)

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is not None:
            return compiled
        with self._lock:
            compiled = _compile(self._build(dialect.name), dialect)
            self._compiled[dialect.name] = compiled
            return compiled


@dataclass(frozen=True, slots=True)
class _Held:
    """A statement :meth:`Prepared.send` held back: its values, already converted, and check."""

    compiled: _Compiled
    values: dict[str, Any]
    check: Callable[[int], None] | None


_MOST_FUSED = 8
"""Statements fused into one at most: every combination is one more statement for the server
to prepare and plan, and for this module to keep."""


def _groups(statements: Sequence[_Held]) -> list[list[_Held]]:
    """``statements`` in order, cut where one cannot be fused with those before it.

    Fused statements see the database as it was before all of them (not each other's writes),
    so a group's statements touch pairwise different tables; their ``WITH`` queries need
    different names too. A statement that cannot be fused is a group of its own.
    """
    groups: list[list[_Held]] = []
    group: list[_Held] = []
    tables: set[str] = set()
    names: set[str] = set()
    for statement in statements:
        parts = statement.compiled.parts
        if group and (
            parts is None
            or group[-1].compiled.parts is None
            or len(group) == _MOST_FUSED
            or not tables.isdisjoint(statement.compiled.tables)
            or not names.isdisjoint(parts.names)
        ):
            groups.append(group)
            group, tables, names = [], set(), set()
        group.append(statement)
        tables |= statement.compiled.tables
        if parts is not None:
            names |= parts.names
    groups.append(group)
    return groups


@dataclass(frozen=True, slots=True)
class _Fused:
    """The statement fusing a group, and the names its parameters take, statement by statement."""

    sql: str
    names: tuple[tuple[str, ...], ...]

    def parameters(self, group: Sequence[_Held]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for names, statement in zip(self.names, group, strict=True):
            values.update(zip(names, statement.values.values(), strict=True))
        return values


_fused: dict[tuple[_Compiled | bool, ...], _Fused] = {}
"""Fused statements by the statements in them (compared by identity; the key keeps them alive,
so no other statement can take one's place), and whether the last one's rows are returned."""
_FUSED_KEPT = 256


def _fuse(group: Sequence[_Held], *, rows_of_last: bool) -> _Fused:
    key: tuple[_Compiled | bool, ...] = (*(item.compiled for item in group), rows_of_last)
    fused = _fused.get(key)
    if fused is None:
        parts = [statement.compiled.parts for statement in group]
        assert all(parts)  # noqa: S101 - only statements taken apart are grouped with others
        if len(_fused) >= _FUSED_KEPT:
            _fused.clear()  # statements prepared for a while only (claims): start over
        fused = _fused[key] = _Fused(
            sql=fusion.fuse(cast(list[fusion.Parts], parts), rows_of_last=rows_of_last),
            # A statement's values always come in the same order (its constants, then its
            # variables), so the renamed names are listed once.
            names=tuple(
                tuple(fusion.renamed(index, name) for name in statement.values)
                for index, statement in enumerate(group)
            ),
        )
    return fused


@dataclass(frozen=True, slots=True)
class _FusedChecks:
    """The checks of the statements of a fused one, given its row of counts."""

    checks: tuple[Callable[[int], None] | None, ...]

    def run(self, counts: Sequence[Any]) -> None:
        for check, count in zip(self.checks, counts, strict=False):
            if check is not None:
                check(int(count))


def _release(connection: Connection) -> None:
    """Put the statements :meth:`Prepared.send` held back into the pipeline, fused by group."""
    held: list[_Held] | None = connection.info.pop(_HELD, None)
    if held:
        for group in _groups(held):
            _send_group(connection, group)


def _send_group(connection: Connection, group: Sequence[_Held]) -> None:
    if len(group) == 1:
        statement = group[0]
        cursor = _pipelined(connection, statement.check)
        _execute(connection, cursor, statement.compiled.sql, statement.values)
        return
    fused = _fuse(group, rows_of_last=False)
    cursor = _pipelined(connection, _FusedChecks(tuple(statement.check for statement in group)))
    _execute(connection, cursor, fused.sql, fused.parameters(group))


def _run_held(
    connection: Connection, compiled: _Compiled, values: dict[str, Any], *, fetch: bool
) -> tuple[list[Sequence[Any]], int]:
    """:func:`_run` a statement after the ones held back, fused with them when it can be."""
    held: list[_Held] | None = connection.info.pop(_HELD, None)
    if not held:
        return _run(connection, compiled.sql, values, fetch=fetch)
    *earlier, group = _groups([*held, _Held(compiled, values, None)])
    for statements in earlier:
        _send_group(connection, statements)
    return _run_group(connection, group, fetch=fetch)


def _run_group(
    connection: Connection, group: Sequence[_Held], *, fetch: bool
) -> tuple[list[Sequence[Any]], int]:
    """Run ``group`` now, as one statement.

    The checks of all but its last statement run; the last one's rows (when ``fetch``) and
    count are returned.
    """
    last = group[-1]
    if len(group) == 1:
        return _run(connection, last.compiled.sql, last.values, fetch=fetch)
    rows_of_last = fetch and last.compiled.columns is not None
    fused = _fuse(group, rows_of_last=rows_of_last)
    raw_rows, _ = _run(connection, fused.sql, fused.parameters(group), fetch=True)
    counts = raw_rows[0][: len(group)]
    _FusedChecks(tuple(statement.check for statement in group[:-1])).run(counts)
    count = int(counts[-1])
    if not (rows_of_last and count):
        return [], count
    return [row[len(group) :] for row in raw_rows], count


def _run(
    connection: Connection, sql: str, params: dict[str, Any], *, fetch: bool
) -> tuple[list[Sequence[Any]], int]:
    """Execute on the connection's DBAPI cursor, inside its current transaction.

    Going under SQLAlchemy's execution layer saves building a result object per statement.
    Statement listeners (``before_cursor_execute``) still see the statement, and driver errors
    are translated into SQLAlchemy's, as its own execution would: a lost connection is
    invalidated and reported as ``OperationalError`` with ``connection_invalidated`` set.

    One cursor per driver connection is reused: creating one is a good part of the cost of a
    statement with psycopg. Rows are fetched only from statements that return some (asking
    the cursor for its ``description`` builds an object per column). Statements sent earlier
    (:meth:`Prepared.send`) go to the server together with this one.
    """
    fairy = connection.connection
    cursor = fairy.info.get(_CURSOR)
    if cursor is None:
        raw = fairy.dbapi_connection
        assert raw is not None  # noqa: S101 - a connection in a transaction has its DBAPI connection
        cursor = fairy.info[_CURSOR] = raw.cursor()
    _execute(connection, cursor, sql, params)
    # The earlier statements' checks run once this one's rows are read: a check may execute
    # statements of its own, on this same cursor.
    checks = _sync(connection) if _PIPELINE in fairy.info else None
    try:
        rows = list(cursor.fetchall()) if fetch else []
        rowcount = cursor.rowcount
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _translate(connection, exc, cursor, sql, params) from exc
    if checks:
        _run_checks(checks)
    return rows, rowcount


def _execute(connection: Connection, cursor: Any, sql: str, params: dict[str, Any]) -> None:
    if connection.dispatch.before_cursor_execute:
        connection.dispatch.before_cursor_execute(connection, cursor, sql, params, None, False)
    try:
        cursor.execute(sql, params)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _translate(connection, exc, cursor, sql, params) from exc


def _translate(
    connection: Connection, exc: Any, cursor: Any, sql: str, params: Mapping[str, Any]
) -> StatementError:
    """The SQLAlchemy error for a driver error (a lost connection is invalidated)."""
    dialect = connection.dialect
    fairy = connection.connection
    disconnect = dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)
    # A fresh cursor for the next statement: this one may hold a failed result.
    if fairy.info.get(_CURSOR) is cursor:
        del fairy.info[_CURSOR]
    cursor.close()
    discard(connection)
    if disconnect:
        connection.invalidate(exc)
    error: StatementError = DBAPIError.instance(
        sql,
        params,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=disconnect,
        dialect=dialect,
    )
    return error


@dataclass(slots=True)
class _Pipeline:
    """A PostgreSQL pipeline open on a connection, and the checks of the statements in it."""

    context: Any
    checks: _Checks = field(default_factory=list)


_Check = Callable[[int], None] | _FusedChecks | None
_Checks = list[tuple[Any, _Check]]


def _pipelined(connection: Connection, check: _Check) -> Any:
    """A new cursor in the connection's pipeline (opened if need be), its check registered.

    Each statement gets a cursor of its own: its results are read once the pipeline synced.
    """
    raw = connection.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - a connection in a transaction has its DBAPI connection
    try:
        pipeline = connection.info.get(_PIPELINE)
        if pipeline is None:
            pipeline = connection.info[_PIPELINE] = _Pipeline(raw.pipeline())
            pipeline.context.__enter__()
        cursor = raw.cursor()
    except connection.dialect.loaded_dbapi.Error as exc:
        discard(connection)
        raise DBAPIError.instance(
            "(pipeline)", {}, exc, connection.dialect.loaded_dbapi.Error, dialect=connection.dialect
        ) from exc
    pipeline.checks.append((cursor, check))
    return cursor


def flush(connection: Connection) -> None:
    """Send what :meth:`Prepared.send` left in the connection's pipeline; run its checks.

    Nothing to do when nothing waits (and always on SQLite).
    """
    # Until nothing waits: a check may send statements of its own.
    while not (connection.invalidated or connection.closed) and (
        _HELD in connection.info or _PIPELINE in connection.info
    ):
        held: list[_Held] | None = connection.info.pop(_HELD, None)
        if held:
            *earlier, group = _groups(held)
            if not earlier and _PIPELINE not in connection.info:
                # One statement to send, and nothing else waits: a pipeline would only add.
                last = group[-1]
                _, count = _run_group(connection, group, fetch=last.compiled.columns is not None)
                if last.check is not None:
                    last.check(count)
                continue
            for statements in (*earlier, group):
                _send_group(connection, statements)
        _run_checks(_sync(connection))


def _sync(connection: Connection) -> _Checks:
    """Close the connection's pipeline, sending what it holds; its statements' checks."""
    pipeline: _Pipeline | None = connection.info.pop(_PIPELINE, None)
    if pipeline is None:
        return []
    try:
        pipeline.context.__exit__(None, None, None)
    except connection.dialect.loaded_dbapi.Error as exc:
        for cursor, _ in pipeline.checks:
            cursor.close()
        raise _translate(connection, exc, pipeline.checks[-1][0], "(pipeline)", {}) from exc
    return pipeline.checks


def _run_checks(checks: _Checks) -> None:
    for cursor, check in checks:
        if check is _FETCHED_LATER:
            continue  # its caller fetches the rows, then closes it
        if isinstance(check, _FusedChecks):
            counts = cursor.fetchone()
            cursor.close()
            check.run(counts)
            continue
        count = cursor.rowcount
        cursor.close()
        if check is not None:
            check(count)


def discard(connection: Connection) -> None:
    """Close the connection's pipeline, if any, ignoring what it held (a rollback follows)."""
    if connection.invalidated or connection.closed:
        return  # its driver connection, pipeline included, is gone
    connection.info.pop(_HELD, None)
    pipeline = connection.info.pop(_PIPELINE, None)
    if pipeline is None:
        return
    with contextlib.suppress(Exception):
        pipeline.context.__exit__(None, None, None)
    for cursor, _ in pipeline.checks:
        with contextlib.suppress(Exception):
            cursor.close()


def _FETCHED_LATER(_count: int) -> None:  # noqa: N802 - a marker, not a check
    """Marks a pipelined statement whose rows are fetched by :meth:`Prepared.rows_later`."""


_PIPELINE = "squidmesh_pipeline"
"""Where a connection's open pipeline is kept (its ``info`` dict)."""
_HELD = "squidmesh_held"
"""Where a connection's statements held back by :meth:`Prepared.send` wait (its ``info``)."""
_CURSOR = "squidmesh_cursor"
"""Where a driver connection's reusable cursor is kept (its ``info`` dict)."""


def _compile(statement: ClauseElement, dialect: Dialect) -> _Compiled:
    # Named parameters let one dict serve every placeholder: pysqlite's default is positional
    # ("qmark"), so SQLite statements are compiled for its "named" style; psycopg's default
    # "pyformat" is already named.
    target = sqlite.dialect(paramstyle="named") if dialect.name == "sqlite" else dialect
    compiled = cast(SQLCompiler, statement.compile(dialect=target))
    constants: dict[str, Any] = {}
    variables: list[tuple[str, str, Processor | None]] = []
    seen: set[str] = set()
    for bind, name in compiled.bind_names.items():
        if name in seen:
            continue
        seen.add(name)
        if bind.expanding:
            raise ValueError(f"prepared statements cannot expand IN parameters ({name})")
        process = _bind_processor(bind.type, dialect)
        if bind.required:
            variables.append((name, bind.key, process))
        else:  # a value given when the statement was built
            value = bind.effective_value
            constants[name] = process(value) if process is not None else value
    columns = list(getattr(statement, "exported_columns", ()))
    converters = []
    for column in columns:
        process = _result_processor(column.type, dialect)
        if process is not None:
            converters.append((column.key, process))
    sql = str(compiled)
    return _Compiled(
        sql=sql,
        constants=constants,
        variables=tuple(variables),
        columns=tuple(column.key for column in columns) if columns else None,
        converters=tuple(converters),
        tables=frozenset(
            element.name
            for element in visitors.iterate(statement)
            if isinstance(element, sa.TableClause)
        ),
        parts=fusion.split(sql) if dialect.name == "postgresql" else None,
    )


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    if isinstance(type_, sa.Uuid):
        return _id_to_hex if dialect.name == "sqlite" else _id_to_native
    if isinstance(type_, UTCDateTime) and dialect.name == "sqlite":
        return _time_to_sqlite
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    if isinstance(type_, sa.Uuid):
        return _hex_to_id if dialect.name == "sqlite" else str
    if isinstance(type_, UTCDateTime) and dialect.name == "sqlite":
        return _time_from_sqlite
    return type_.dialect_impl(dialect).result_processor(dialect, None)


def _id_to_hex(value: object) -> str | None:
    """An id as SQLite stores it (SQLAlchemy's ``Uuid``: 32 hex digits)."""
    if value is None:
        return None
    if isinstance(value, str) and _CANONICAL_ID.fullmatch(value):
        return value.replace("-", "")
    return _as_uuid(value).hex


def _id_to_native(value: object) -> object:
    """An id for PostgreSQL's ``uuid`` (the statement casts text to it)."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and _CANONICAL_ID.fullmatch(value):
        return value
    return _as_uuid(value)


def _as_uuid(value: object) -> uuid.UUID:
    # Anything but a canonical string: parsed, so a malformed id fails as it always did.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(cast(str, value))


def _hex_to_id(value: str) -> str:
    value = value.lower()
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def _time_to_sqlite(value: datetime | None) -> str | None:
    """Naive UTC text, ``YYYY-MM-DD HH:MM:SS.ffffff``, SQLAlchemy's format (it sorts by time)."""
    global _last_time
    if value is None:
        return None
    last = _last_time
    if last[0] is value:  # a transaction stamps most of its values with the same object
        return last[1]
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: squidmesh stores aware UTC datetimes")
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    text = utc.replace(tzinfo=None).isoformat(" ", "microseconds")
    # One assignment, so a thread never sees one value with another's text; the tuple keeps
    # the datetime alive, so no other object can take its identity meanwhile.
    _last_time = (value, text)
    return text


_last_time: tuple[object, str] = (None, "")


def _time_from_sqlite(value: object) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(cast(str, value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
