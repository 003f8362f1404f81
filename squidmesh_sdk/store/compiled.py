"""A hot-path statement compiled for one dialect, with the conversions of its values.

:class:`~squidmesh_sdk.store.prepared.Prepared` compiles its statement once per dialect into a
:class:`Compiled`: the SQL, how each parameter is converted for the driver, which result
columns need converting back, the tables it touches and (on PostgreSQL) its parts for fusing
(:mod:`~squidmesh_sdk.store.fusion`). The column types convert values both ways (JSON, aware
datetimes) with the processors SQLAlchemy gives those types for the dialect.

Ids and times, the values every hot statement carries, get converters of their own, because
SQLAlchemy's went through ``uuid.UUID`` and a regular expression for each value (a fifth of a
step's time in a profile): ids are taken as canonical strings or ``uuid.UUID`` and always come
back as canonical strings (``"0190e3a4-..."``), which is what every record holds; SQLite times
are written and parsed in the same text format SQLAlchemy uses.
"""

from __future__ import annotations

import sys
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeEngine

from squidmesh_sdk.generated import define
from squidmesh_sdk.store import fusion
from squidmesh_sdk.store.ids import CANONICAL_ID
from squidmesh_sdk.store.json_text import ENCODER, dumps, loads
from squidmesh_sdk.store.types import UTCDateTime, naive_time

__all__ = ["Compiled", "compile_statement"]

Processor = Callable[[Any], Any]
Parameters = Callable[[Mapping[str, Any]], dict[str, Any]]
Converter = Callable[[Sequence[Sequence[Any]]], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Inline:
    """What the generated code evaluates in place of a converter's call, where it can.

    A converter is a Python call per value, and a step converts some forty values: the
    expression handles the common values without one (an id already seen, a JSON dict, the
    time the transaction stamps everything with), and calls the converter for the rest.
    ``template`` names the value ``{v}``, the converter ``{p}`` and each of ``names`` (the
    objects it uses) by its key; it must give what the converter gives, for every value.
    """

    template: str
    names: Mapping[str, Any]

    def expression(self, value: str, processor: str, index: int, namespace: dict[str, Any]) -> str:
        """The expression for the local ``value``; ``namespace`` gets the names it uses."""
        renamed = {name: f"{name}_{index}" for name in self.names}  # "x_12", never "x1" + "2"
        for name, target in self.names.items():
            namespace[renamed[name]] = target
        return self.template.format(v=value, p=processor, **renamed)


_INLINE: weakref.WeakKeyDictionary[Processor, _Inline] = weakref.WeakKeyDictionary()
"""The converters with an inline expression (functions of this module, and the JSON closures
they make per column)."""


def _inline_of(process: Processor) -> _Inline | None:
    """``process``'s inline expression, if it has one."""
    try:
        return _INLINE.get(process)
    except TypeError:  # a converter that cannot be weakly referenced (or hashed) has none
        return None


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed by identity
class Compiled:
    """A statement compiled for one dialect (see the module)."""

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
    parameters: Parameters = field(init=False)
    """The driver's parameters for the caller's: constants, then converted variables.

    Always in the same order for one statement (fused statements rely on it).
    """
    convert: Converter = field(init=False)
    """The driver's rows as dicts of converted values (none for a statement without)."""

    def __post_init__(self) -> None:
        # Generated once per statement: a loop over the variables and columns with a check of
        # each one's converter cost a statement several times the bytecodes of straight code.
        put = object.__setattr__
        put(self, "parameters", _parameters_function(self.constants, self.variables))
        put(self, "convert", _convert_function(self.columns, dict(self.converters)))


def _parameters_function(
    constants: Mapping[str, Any], variables: Sequence[tuple[str, str, Processor | None]]
) -> Parameters:
    namespace: dict[str, Any] = {"constants": constants}
    lines = ["def parameters(params):"]
    items = ["**constants"]
    for index, (name, key, process) in enumerate(variables):
        value = f"params[{key!r}]"
        if process is not None:
            namespace[f"p{index}"] = process
            inline = _inline_of(process)
            if inline is None:
                value = f"p{index}({value})"
            else:
                lines.append(f"    v{index} = {value}")
                value = inline.expression(f"v{index}", f"p{index}", index, namespace)
        items.append(f"{name!r}: {value}")
    lines.append(f"    return {{{', '.join(items)}}}")
    return cast(Parameters, define("parameters", "\n".join(lines), namespace))


def _convert_function(
    columns: Sequence[str] | None, converters: Mapping[str, Processor]
) -> Converter:
    if not columns:
        return lambda raw_rows: []
    namespace: dict[str, Any] = {}
    names = [f"v{index}" for index in range(len(columns))]
    items = []
    for index, column in enumerate(columns):
        value = names[index]
        process = converters.get(column)
        if process is not None:
            namespace[f"c{index}"] = process
            inline = _inline_of(process)
            call = (
                f"c{index}({value})"
                if inline is None
                else inline.expression(value, f"c{index}", index, namespace)
            )
            value = f"({call} if {value} is not None else None)"
        items.append(f"{column!r}: {value}")
    source = (
        "def convert(raw_rows):\n"
        "    rows = []\n"
        "    for raw in raw_rows:\n"
        f"        ({', '.join(names)},) = raw\n"  # a row of another length raises ValueError
        f"        rows.append({{{', '.join(items)}}})\n"
        "    return rows"
    )
    return cast(Converter, define("convert", source, namespace))


def compile_statement(statement: ClauseElement, dialect: Dialect) -> Compiled:
    """``statement`` compiled for ``dialect``."""
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
    return Compiled(
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
    if isinstance(type_, UTCDateTime):
        if dialect.name == "sqlite":
            return _time_to_sqlite
        if _driver_takes_datetimes(type_, dialect):
            return _time_to_native
    impl = type_.dialect_impl(dialect)
    general = impl.bind_processor(dialect)
    if general is not None and _json_by_default(impl, dialect):
        if dialect.name == "sqlite":
            return _json_writer(general, dumps, none_as_null=impl.none_as_null)
        if dialect.driver == "psycopg" and isinstance(impl, postgresql.JSONB):
            # SQLAlchemy wraps every value in psycopg's Jsonb, which psycopg writes with
            # json.dumps, or a function the host registered with psycopg (not used here: the
            # host gives the engine a json_serializer instead; docs/hosting.md). JSON values
            # are written as text instead, a string of no type: the statement casts every
            # JSONB parameter (``%(name)s::JSONB``), so the server reads it as JSONB.
            return _json_writer(general, dumps, none_as_null=impl.none_as_null)
    return general


def _result_processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    if isinstance(type_, sa.Uuid):
        return _hex_to_id if dialect.name == "sqlite" else str
    if isinstance(type_, UTCDateTime):
        if dialect.name == "sqlite":
            return _time_from_sqlite
        if _driver_takes_datetimes(type_, dialect):
            return _time_from_native
    impl = type_.dialect_impl(dialect)
    if isinstance(impl, sa.Float) and not impl.asdecimal and dialect.name == "postgresql":
        # FLOAT (double precision, or real for a low precision) the driver reads as a float
        # already. SQLAlchemy's processor would ask for the column's type code, which a
        # statement compiled ahead of any result has not got.
        return None
    general = impl.result_processor(dialect, None)
    if general is not None and dialect.name == "sqlite" and _json_by_default(impl, dialect):
        return _json_from_text(general)
    return general


def _driver_takes_datetimes(type_: UTCDateTime, dialect: Dialect) -> bool:
    """Whether the driver binds and reads ``datetime`` as it is (psycopg does).

    Then :class:`UTCDateTime`'s own conversions are all there is to do, and
    :func:`_time_to_native` and :func:`_time_from_native` do them without the layers of
    SQLAlchemy's ``TypeDecorator`` around them (two calls a value).
    """
    impl = type_.impl_instance.dialect_impl(dialect)
    return impl.bind_processor(dialect) is None and impl.result_processor(dialect, None) is None


def _json_by_default(type_: TypeEngine[Any], dialect: Dialect) -> TypeGuard[sa.JSON]:
    """A JSON column written and read with ``json``'s own functions.

    A host that gave its engine a ``json_serializer`` or ``json_deserializer`` keeps them.
    """
    return (
        isinstance(type_, sa.JSON)
        and dialect._json_serializer is None
        and dialect._json_deserializer is None
    )


_JSON_VALUE_CLASSES = frozenset((dict, list, str, int, float, bool))
"""Values ``_json_writer`` writes itself (exactly these classes, not subclasses)."""


def _json_writer(
    general: Processor, write: Callable[[Any], Any], *, none_as_null: bool
) -> Processor:
    """SQLAlchemy's processor, with JSON values written by ``write`` (``json_text``).

    ``None`` is SQL ``NULL`` for a column made with ``none_as_null`` (every squidmesh JSON
    column); anything else (``JSON.NULL``, ``null()``, subclasses) goes through SQLAlchemy's.
    """

    def process(value: Any) -> Any:
        if value.__class__ in _JSON_VALUE_CLASSES:
            return write(value)
        if value is None and none_as_null:
            return None  # SQL NULL, as SQLAlchemy's processor makes it
        return general(value)

    if write is dumps and ENCODER is not None:
        # What dumps does, without its frame.
        _INLINE[process] = _Inline(
            "({join}({encode}({v}, 0)) if {v}.__class__ in {classes} else {p}({v}))",
            {"join": "".join, "encode": ENCODER, "classes": _JSON_VALUE_CLASSES},
        )
    else:
        _INLINE[process] = _Inline(
            "({write}({v}) if {v}.__class__ in {classes} else {p}({v}))",
            {"write": write, "classes": _JSON_VALUE_CLASSES},
        )
    return process


def _json_from_text(general: Processor) -> Processor:
    """SQLite: SQLAlchemy's processor, with text read by ``json_text.loads``.

    SQLite hands back numbers for JSON numbers stored as such: those go through SQLAlchemy's.
    """

    def process(value: Any) -> Any:
        if value.__class__ is str:
            return loads(value)
        return general(value)

    _INLINE[process] = _Inline(
        "({loads}({v}) if {v}.__class__ is str else {p}({v}))", {"loads": loads}
    )
    return process


_hex_of: dict[str, str] = {}
"""Ids in canonical text written lately, with their 32 hex digits.

A step's statements carry the same few ids again and again (its run's, its step run's, its
job's): looked up here, each is checked against :data:`CANONICAL_ID` once, not at every
statement (the regular expression was a percent of a step's instructions). A text that
matched once always does, so the entries never go stale; the dict is emptied when full.
Only ``str`` itself is looked up: a subclass may compare equal to an id it is not.
"""
_MOST_KNOWN = 4096


def _remember(value: str) -> str:
    """The hex digits of ``value``, an id in canonical text, remembered in :data:`_hex_of`."""
    hexed = value.replace("-", "")
    if len(_hex_of) >= _MOST_KNOWN:
        _hex_of.clear()
    _hex_of[value] = hexed
    return hexed


def _id_to_hex(value: object) -> str | None:
    """An id as SQLite stores it (SQLAlchemy's ``Uuid``: 32 hex digits)."""
    if value is None:
        return None
    if value.__class__ is str:  # a subclass could compare equal to a remembered id
        hexed = _hex_of.get(value)
        if hexed is not None:
            return hexed
        if CANONICAL_ID.fullmatch(value):
            return _remember(value)
    elif isinstance(value, str) and CANONICAL_ID.fullmatch(value):
        return value.replace("-", "")
    return _as_uuid(value).hex


def _id_to_native(value: object) -> object:
    """An id for PostgreSQL's ``uuid`` (the statement casts text to it)."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    if value.__class__ is str:  # a subclass could compare equal to a remembered id
        if value in _hex_of:
            return value
        if CANONICAL_ID.fullmatch(value):
            _remember(value)
            return value
    elif isinstance(value, str) and CANONICAL_ID.fullmatch(value):
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
        raise naive_time(value)
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    # Without its "+00:00": cheaper than a naive copy's text (``replace`` parses keywords).
    text = utc.isoformat(" ", "microseconds")[:-6]
    # One assignment, so a thread never sees one value with another's text; the tuple keeps
    # the datetime alive, so no other object can take its identity meanwhile.
    _last_time = (value, text)
    return text


_NO_TIME = object()
_last_time: tuple[object, str] = (_NO_TIME, "")
"""The last datetime written, with its text (read once, as a pair: threads rebind it)."""

_WRITTEN_LENGTH = len("2026-12-06 12:00:00.123456")
"""The length of every time ``_time_to_sqlite`` writes."""
_WRITTEN_SEPARATORS = "2026-12-06 12:00:00.123456"[4:20:3]
"""Its separators, every third character from the fifth: ``"-- ::."``."""


def _time_to_native(value: datetime | None) -> datetime | None:
    """What :meth:`UTCDateTime.process_bind_param` gives on PostgreSQL: an aware UTC datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise naive_time(value)
    return value.astimezone(UTC)


def _time_from_native(value: datetime) -> datetime:
    """What :meth:`UTCDateTime.process_result_value` gives for a value that is not ``None``."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time_from_sqlite(value: object) -> datetime:
    if (
        value.__class__ is str
        and len(value) == _WRITTEN_LENGTH
        and value[4:20:3] == _WRITTEN_SEPARATORS
    ):
        # Text in the form ``_time_to_sqlite`` writes, naive UTC: parsed as UTC at once, a
        # fifth of the cost of parsing it and then setting its zone with ``replace``. Only
        # that form: with other text the suffix can change what 3.11's parser accepts.
        try:
            parsed = datetime.fromisoformat(value + "+00:00")
        except ValueError:
            pass  # not a time: the general way says so
        else:
            return parsed
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(cast(str, value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_INLINE[_id_to_hex] = _Inline(
    "(({known}({v}) if {v}.__class__ is str else None) or {p}({v}))", {"known": _hex_of.get}
)
_INLINE[_id_to_native] = _Inline(
    "({v} if {v}.__class__ is str and {v} in {known} else {p}({v}))", {"known": _hex_of}
)
# A datetime already in UTC is its own conversion: ``astimezone(tz)`` returns the datetime
# itself when its zone is ``tz`` (the runtime's clock makes such datetimes).
_UTC_AS_IT_IS = _Inline(
    "({v} if {v}.__class__ is {datetime} and {v}.tzinfo is {utc} else {p}({v}))",
    {"datetime": datetime, "utc": UTC},
)
_INLINE[_time_to_native] = _UTC_AS_IT_IS
_INLINE[_time_from_native] = _UTC_AS_IT_IS
# The pair is read once (``_t``, a local of the generated function): another thread may
# rebind ``_last_time`` between two reads.
_INLINE[_time_to_sqlite] = _Inline(
    "(_t[1] if (_t := {module}._last_time)[0] is {v} else {p}({v}))",
    {"module": sys.modules[__name__]},
)
