"""Several PostgreSQL statements written as one, with data-modifying ``WITH`` queries.

A chained step's transaction writes the run, rewrites its job, and starts the next step run
(with its first attempt, in the same row): three statements on three tables, none of which
needs another's result.
Sent as one statement they cost the server one parse, plan and executor start instead of
three, and the driver one call (its Python was the largest part of a step on PostgreSQL).

Each statement becomes a ``WITH`` query of the fused one, its own ``WITH`` queries hoisted
beside it, its parameters renamed so that the statements' names cannot meet. The new names are
short (the statement's number, then the parameter's), and a group is fused only while the
result stays within :data:`LONGEST` and :data:`MOST_PARAMETERS`: psycopg caches its parse of
a statement only that far, and parses a longer one again at every execution (a chained step's
fused statement of 4,108 bytes cost its step 22,210 Python bytecodes instead of 15,483). The
fused statement returns one row: how many rows each statement touched (or returned), then
the last statement's returned columns. When that statement returns no row, the row still
comes (a ``LEFT JOIN``), with its columns null, so the counts always arrive.

The statements of a fused one see the database as it was before the fused statement, not each
other's writes, and the order of their writes is not defined: only statements that touch
different tables may be fused (:mod:`~squidmesh_sdk.store.prepared` decides which).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = [
    "FIXED_SIZE",
    "LONGEST",
    "MOST_FUSED",
    "MOST_PARAMETERS",
    "Parts",
    "fuse",
    "renamed",
    "split",
]

LONGEST = 4096
"""Bytes of the longest fused statement: psycopg caches the parse of a statement up to 4 KiB
(``psycopg._queries.MAX_CACHED_STATEMENT_LENGTH``) and parses a longer one at every execution."""
MOST_PARAMETERS = 50
"""Parameters of a fused statement at most (psycopg caches statements with up to 50)."""

MOST_FUSED = 8
"""Statements fused into one at most: every combination is one more statement for the server
to prepare and plan, and for :mod:`~squidmesh_sdk.store.sending` to keep. A statement's
:attr:`Parts.size` is measured as the last of that many (its longest names)."""

_PARAMETER = re.compile(r"%\((\w+)\)s")
_WITH = re.compile(r"WITH\s+", re.IGNORECASE)
_QUERY_NAME = re.compile(r"\s*(\w+)\s+AS\s*\(", re.IGNORECASE)
_COMMA = re.compile(r"\s*,")
_DML = re.compile(r"(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_QUERY = re.compile(r"(SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
_LOCKING = re.compile(
    r"\bFOR\s+(NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b|\bpg_(try_)?advisory_",
    re.IGNORECASE,
)
_UNSAFE = ("'", "$", "--", "/*", ";")
"""Text that could hide a parenthesis or a parameter from the scan: literals, comments."""


@dataclass(frozen=True, slots=True)
class Parts:
    """A statement taken apart: its ``WITH`` queries and the statement that follows them."""

    queries: tuple[str, ...]
    """``name AS (...)``, each as written."""
    names: frozenset[str]
    main: str
    parameters: tuple[str, ...]
    """The names of its parameters, each once, in the order they first appear."""
    size: int
    """Bytes it adds to a fused statement, at most (see :data:`FIXED_SIZE`)."""
    returns_rows: bool
    """Whether ``main`` returns rows (a ``SELECT``, or a write with ``RETURNING``)."""


def split(sql: str) -> Parts | None:
    """``sql`` taken apart, or ``None`` when it cannot be fused.

    Only statements made of identifiers, operators, parentheses and ``%(name)s`` parameters
    are taken apart (any string literal, dollar quote or comment refuses), so counting
    parentheses finds where each ``WITH`` query ends. ``WITH RECURSIVE`` and ``MATERIALIZED``
    queries refuse too, and statements other than ``SELECT``, ``INSERT``, ``UPDATE`` and
    ``DELETE``. So do statements that lock rows (``FOR UPDATE`` and the like) or take advisory
    locks (``pg_advisory_xact_lock`` and the like): fused, they would take their locks in no set
    order with the others' writes, where the code that sent them chose an order. And so do
    statements whose rows come in an order (``ORDER BY``).
    """
    if any(token in sql for token in _UNSAFE) or _LOCKING.search(sql) is not None:
        return None
    text = sql.strip()
    queries: list[str] = []
    names: list[str] = []
    position = 0
    opening = _WITH.match(text)
    if opening is not None:
        position = opening.end()
        while True:
            query = _QUERY_NAME.match(text, position)
            if query is None:
                return None
            end = _closing(text, query.end())
            if end is None:
                return None
            queries.append(text[query.start(1) : end])
            names.append(query[1])
            comma = _COMMA.match(text, end)
            if comma is None:
                position = end
                break
            position = comma.end()
    main = text[position:].strip()
    if (
        _QUERY.match(main) is None  # only these can be WITH queries (not SAVEPOINT, say)
        or len(set(names)) != len(names)
        or _closing(f"{main})", 0) != len(main) + 1
        # A fused statement returns the last one's rows through a join, in no set order.
        or _at_top_level(main, _ORDER_BY)
    ):
        return None
    writes = _DML.match(main) is not None
    parts = Parts(
        queries=tuple(queries),
        names=frozenset(names),
        main=main,
        parameters=tuple(dict.fromkeys(_PARAMETER.findall(text))),
        size=0,
        returns_rows=not writes or _at_top_level(main, _RETURNING),
    )
    # Renamed as the last statement of the largest group (the longest names it may get).
    queries, count = _pieces(parts, MOST_FUSED - 1)
    size = sum(len(query.encode()) + 2 for query in queries) + len(count) + 2
    return replace(parts, size=size)


def _at_top_level(sql: str, pattern: re.Pattern[str]) -> bool:
    """Whether ``pattern`` occurs in ``sql`` outside every parenthesis."""
    return any(
        sql.count("(", 0, match.start()) == sql.count(")", 0, match.start())
        for match in pattern.finditer(sql)
    )


def _closing(text: str, start: int) -> int | None:
    """The index after the parenthesis closing the one opened just before ``start``."""
    depth = 1
    for index in range(start, len(text)):
        char = text[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def fuse(statements: Sequence[Parts], *, rows_of_last: bool) -> str:
    """One statement doing what ``statements`` do, in one ``WITH``.

    Its row holds a count per statement (``squidmesh_count_<i>``: rows touched, or rows
    returned for a ``SELECT``), then, with ``rows_of_last``, the columns the last statement
    returns: one row per row it returns, or a single row of nulls when it returns none.
    Each statement's parameters are renamed (see :func:`renamed`).
    """
    queries: list[str] = []
    counts: list[str] = []
    for index, parts in enumerate(statements):
        more, count = _pieces(parts, index)
        queries.extend(more)
        counts.append(count)
    sql = f"WITH {', '.join(queries)} SELECT {', '.join(counts)}"
    if rows_of_last:
        sql += _rows_of(len(statements) - 1)
    return sql


def _pieces(parts: Parts, index: int) -> tuple[list[str], str]:
    """The ``WITH`` queries and the count of ``parts`` as the ``index``-th fused statement."""
    names = renamed(index, parts)
    queries = [_renamed(query, names) for query in parts.queries]
    main = _renamed(parts.main, names)
    if not parts.returns_rows:
        main = f"{main} RETURNING 1"
    queries.append(f"{_fused_name(index)} AS ({main})")
    # Names and statements of our own (no value is ever written into the SQL).
    counted = f"(SELECT count(*) FROM {_fused_name(index)})"  # noqa: S608
    return queries, f"{counted} AS squidmesh_count_{index}"


def _rows_of(index: int) -> str:
    last = _fused_name(index)
    return f", {last}.* FROM (SELECT 1) AS squidmesh_one LEFT JOIN {last} ON true"


def renamed(index: int, parts: Parts) -> dict[str, str]:
    """The names the parameters of the ``index``-th statement take in a fused statement."""
    return {name: f"f{index}_{number}" for number, name in enumerate(parts.parameters)}


def _renamed(sql: str, names: dict[str, str]) -> str:
    return _PARAMETER.sub(lambda match: f"%({names[match[1]]})s", sql)


def _fused_name(index: int) -> str:
    return f"squidmesh_fused_{index}"


FIXED_SIZE = len("WITH  SELECT ") + len(_rows_of(MOST_FUSED - 1))
"""Bytes of a fused statement beside its statements' own (:attr:`Parts.size`)."""
