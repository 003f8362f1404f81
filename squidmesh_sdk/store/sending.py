"""Sending compiled statements on a connection: at once, held back and fused, or pipelined.

Statements run on the connection's DBAPI cursor, inside its current transaction (going under
SQLAlchemy's execution layer saves building a result object per statement). On PostgreSQL a
statement whose result can wait is held back (:func:`hold`) and goes to the server with the
next statement that needs a result, or with :func:`flush`; held statements on different
tables are fused with each other and with that statement into one
(:mod:`~squidmesh_sdk.store.fusion`), and those that cannot be go ahead of it in psycopg's
pipeline, in order, in the same round trip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, StatementError

from squidmesh_sdk.store import fusion
from squidmesh_sdk.store.compiled import Compiled

__all__ = ["HOLDS_BACK", "discard", "flush", "hold", "run", "run_later"]

HOLDS_BACK = "postgresql"
"""The one dialect whose statements are held back or pipelined
(:func:`hold`, :func:`run_later`; :class:`~squidmesh_sdk.store.prepared.Prepared` asks too).

On any other, a statement runs at once, so nothing ever waits on its connection: the
checks for held statements and an open pipeline (each a few SQLAlchemy properties) are
skipped there.
"""


def run(
    connection: Connection, compiled: Compiled, values: dict[str, Any], *, fetch: bool
) -> tuple[list[Sequence[Any]], int]:
    """Run ``compiled`` now, after the statements held back (fused with them when it can be).

    Returns its raw rows (when ``fetch``) and its row count.
    """
    if connection.dialect.name != HOLDS_BACK:
        return _run(connection, compiled.sql, values, fetch=fetch)
    held: list[_Held] | None = _info(connection).pop(_HELD, None)
    if not held:
        return _run(connection, compiled.sql, values, fetch=fetch)
    *earlier, group = _groups([*held, _Held(compiled, values, None)])
    for statements in earlier:
        _send_group(connection, statements)
    return _run_group(connection, group, fetch=fetch)


def hold(
    connection: Connection,
    compiled: Compiled,
    values: dict[str, Any],
    check: Callable[[int], None] | None,
) -> None:
    """Send ``compiled`` with the next statement that needs a result (PostgreSQL).

    Held back if it can be fused, else put in the pipeline after what is held. ``check``
    receives its row count once it ran.
    """
    if compiled.parts is not None:
        _info(connection).setdefault(_HELD, []).append(_Held(compiled, values, check))
        return
    _release(connection)
    cursor = _pipelined(connection, check)
    _execute(connection, cursor, compiled.sql, values)


def run_later(
    connection: Connection, compiled: Compiled, values: dict[str, Any]
) -> Callable[[], list[Sequence[Any]]]:
    """Put ``compiled`` in the pipeline (PostgreSQL); the returned function gives its raw rows.

    Statements sent after it travel with it; calling the function sends them all.
    """
    _release(connection)
    cursor = _pipelined(connection, _FETCHED_LATER)
    _execute(connection, cursor, compiled.sql, values)

    def fetch() -> list[Sequence[Any]]:
        flush(connection)
        try:
            return cast(list[Sequence[Any]], cursor.fetchall())
        except connection.dialect.loaded_dbapi.Error as exc:
            raise _translate(connection, exc, cursor, compiled.sql, {}) from exc
        finally:
            cursor.close()

    return fetch


def _info(connection: Connection) -> dict[Any, Any]:
    """``connection.info`` (the driver connection's dict), read with one call instead of two.

    The property goes through ``Connection.connection``; the attribute behind it is read
    directly, and the property used only when it is unset (it revalidates, or raises).
    """
    fairy = connection._dbapi_connection
    return fairy.info if fairy is not None else connection.info


@dataclass(frozen=True, slots=True)
class _Held:
    """A statement :func:`hold` held back: its values, already converted, and check."""

    compiled: Compiled
    values: dict[str, Any]
    check: Callable[[int], None] | None


def _groups(statements: Sequence[_Held]) -> list[list[_Held]]:
    """``statements`` in order, cut where one cannot be fused with those before it.

    Fused statements see the database as it was before all of them (not each other's writes),
    so a group's statements touch pairwise different tables; their ``WITH`` queries need
    different names too. A statement that cannot be fused is a group of its own. A group stays
    within the size and parameters psycopg caches the parse of (:data:`fusion.LONGEST`).
    """
    groups: list[list[_Held]] = []
    group: list[_Held] = []
    tables: set[str] = set()
    names: set[str] = set()
    size, parameters = fusion.FIXED_SIZE, 0
    for statement in statements:
        parts = statement.compiled.parts
        if group and (
            parts is None
            or group[-1].compiled.parts is None
            or len(group) == fusion.MOST_FUSED
            or not tables.isdisjoint(statement.compiled.tables)
            or not names.isdisjoint(parts.names)
            or size + parts.size > fusion.LONGEST
            or parameters + len(parts.parameters) > fusion.MOST_PARAMETERS
        ):
            groups.append(group)
            group, tables, names = [], set(), set()
            size, parameters = fusion.FIXED_SIZE, 0
        group.append(statement)
        tables |= statement.compiled.tables
        if parts is not None:
            names |= parts.names
            size += parts.size
            parameters += len(parts.parameters)
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


_fused: dict[tuple[Compiled | bool, ...], _Fused] = {}
"""Fused statements by the statements in them (compared by identity; the key keeps them alive,
so no other statement can take one's place), and whether the last one's rows are returned."""
_FUSED_KEPT = 256


def _fuse(group: Sequence[_Held], *, rows_of_last: bool) -> _Fused:
    key: tuple[Compiled | bool, ...] = (*(item.compiled for item in group), rows_of_last)
    fused = _fused.get(key)
    if fused is None:
        parts = cast(list[fusion.Parts], [statement.compiled.parts for statement in group])
        assert all(parts)  # noqa: S101 - only statements taken apart are grouped with others
        if len(_fused) >= _FUSED_KEPT:
            _fused.clear()  # statements prepared for a while only (claims): start over
        renamed = [fusion.renamed(index, part) for index, part in enumerate(parts)]
        fused = _fused[key] = _Fused(
            sql=fusion.fuse(parts, rows_of_last=rows_of_last),
            # A statement's values always come in the same order (its constants, then its
            # variables), so the renamed names are listed once.
            names=tuple(
                tuple(names[name] for name in statement.values)
                for names, statement in zip(renamed, group, strict=True)
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
    """Put the statements :func:`hold` held back into the pipeline, fused by group."""
    held: list[_Held] | None = _info(connection).pop(_HELD, None)
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
    (:func:`hold`) go to the server together with this one.
    """
    # The attribute behind ``Connection.connection``, read without the property's call; the
    # property itself when it is unset (it revalidates, or raises).
    fairy = connection._dbapi_connection
    if fairy is None:
        fairy = connection.connection
    cursor = fairy.info.get(_CURSOR)
    if cursor is None:
        raw = fairy.dbapi_connection
        assert raw is not None  # noqa: S101 - a connection in a transaction has its DBAPI connection
        cursor = fairy.info[_CURSOR] = raw.cursor()
    _execute(connection, cursor, sql, params)
    # The earlier statements' checks run once this one's rows are read: a check may execute
    # statements of its own, on this same cursor.
    checks = (
        _sync(connection)
        if connection.dialect.name == HOLDS_BACK and _PIPELINE in fairy.info
        else None
    )
    try:
        rows = list(cursor.fetchall()) if fetch else []
        rowcount = cursor.rowcount
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _translate(connection, exc, cursor, sql, params) from exc
    if checks:
        _run_checks(checks)
    return rows, rowcount


def _execute(connection: Connection, cursor: Any, sql: str, params: dict[str, Any]) -> None:
    # Whether a ``before_cursor_execute`` listener waits: what
    # ``bool(connection.dispatch.before_cursor_execute)`` answers, without its four Python
    # calls a statement. Listeners on the connection or the ``Connection`` class set its
    # ``_has_events`` (SQLAlchemy's own check; the full answer is then asked); those on the
    # engine are in its collection, those on the ``Engine`` class in the collection's
    # ``parent_listeners``. (SQLAlchemy 2.0 copies the engine's flag into every connection:
    # squidmesh's engines always listen to something, so 2.0 always asks the full answer.)
    listening = connection.engine.dispatch.before_cursor_execute
    if (
        bool(connection.dispatch.before_cursor_execute)
        if connection._has_events
        else listening.listeners or listening.parent_listeners
    ):
        connection.dispatch.before_cursor_execute(connection, cursor, sql, params, None, False)
    try:
        cursor.execute(sql, params)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _translate(connection, exc, cursor, sql, params) from exc


def _translate(
    connection: Connection, exc: Any, cursor: Any, sql: str, params: Mapping[str, Any]
) -> StatementError:
    """The SQLAlchemy error for a driver error (a lost connection is invalidated)."""
    fairy = connection.connection
    disconnect = connection.dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)
    # A fresh cursor for the next statement: this one may hold a failed result.
    if fairy.info.get(_CURSOR) is cursor:
        del fairy.info[_CURSOR]
    cursor.close()
    discard(connection)
    return driver_error(connection, exc, sql, params, disconnect=disconnect)


def driver_error(
    connection: Connection,
    exc: Any,
    sql: str,
    params: Mapping[str, Any] | None,
    *,
    disconnect: bool | None = None,
) -> StatementError:
    """The SQLAlchemy error for ``exc``, a driver error of ``sql`` sent outside SQLAlchemy.

    What SQLAlchemy raises for a statement it sent itself: ``OperationalError`` for a
    database that is locked or unreachable, ``IntegrityError`` for a constraint, and so on,
    each with the driver's error as ``orig``. A lost connection (``disconnect``, asked of the
    dialect unless given) is invalidated, and the error says so, so that it is not used again.
    """
    dialect = connection.dialect
    if disconnect is None:
        disconnect = dialect.is_disconnect(exc, connection.connection.dbapi_connection, None)
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
        info = _info(connection)
        pipeline = info.get(_PIPELINE)
        if pipeline is None:
            pipeline = info[_PIPELINE] = _Pipeline(raw.pipeline())
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
    """Send what :func:`hold` held back or left in the pipeline; run the checks.

    Nothing to do when nothing waits (and always on SQLite).
    """
    if connection.dialect.name != HOLDS_BACK:
        return
    # Until nothing waits: a check may send statements of its own.
    while not (connection.invalidated or connection.closed):
        info = _info(connection)
        if _HELD not in info and _PIPELINE not in info:
            break
        held: list[_Held] | None = info.pop(_HELD, None)
        if held:
            *earlier, group = _groups(held)
            if not earlier and _PIPELINE not in info:
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
    pipeline: _Pipeline | None = _info(connection).pop(_PIPELINE, None)
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
    if connection.dialect.name != HOLDS_BACK or connection.invalidated or connection.closed:
        return  # its driver connection, pipeline included, is gone
    info = _info(connection)
    info.pop(_HELD, None)
    pipeline = info.pop(_PIPELINE, None)
    if pipeline is None:
        return
    with contextlib.suppress(Exception):
        pipeline.context.__exit__(None, None, None)
    for cursor, _ in pipeline.checks:
        with contextlib.suppress(Exception):
            cursor.close()


def _FETCHED_LATER(_count: int) -> None:  # noqa: N802 - a marker, not a check
    """Marks a pipelined statement whose rows are fetched through :func:`run_later`."""


_PIPELINE = "squidmesh_pipeline"
"""Where a connection's open pipeline is kept (its ``info`` dict)."""
_HELD = "squidmesh_held"
"""Where a connection's statements held back by :func:`hold` wait (its ``info``)."""
_CURSOR = "squidmesh_cursor"
"""Where a driver connection's reusable cursor is kept (its ``info`` dict)."""
