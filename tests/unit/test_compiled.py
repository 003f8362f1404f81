"""A compiled statement's generated parameter and row conversions."""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from squidmesh_sdk.store.compiled import (
    Compiled,
    _time_from_native,
    _time_from_sqlite,
    _time_to_native,
    _time_to_sqlite,
    compile_statement,
)
from squidmesh_sdk.store.schema import attempts, job_status_is, jobs
from squidmesh_sdk.store.types import UTCDateTime

ROOT = Path(__file__).parents[2]
NOW = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
ID = "0190e3a4-0000-7000-8000-000000000001"


def _finish() -> sa.Update:
    return (
        attempts.update()
        .where(attempts.c.id == sa.bindparam("p_id"))
        .values(status="completed", error=sa.bindparam("p_error"), updated_at=sa.bindparam("p_now"))
        .returning(attempts.c.id, attempts.c.status, attempts.c.error, attempts.c.updated_at)
    )


def test_parameters_put_constants_first_then_each_converted_variable() -> None:
    compiled = compile_statement(_finish(), sqlite.dialect())
    values = compiled.parameters({"p_id": uuid.UUID(ID), "p_error": {"k": 1}, "p_now": NOW})
    # Constants, then the variables in the statement's order (fused statements rely on it).
    assert list(values) == ["status", *(name for name, _, _ in compiled.variables)]
    assert [name for name, _, _ in compiled.variables] == ["p_error", "p_now", "p_id"]
    assert values["status"] == "completed"
    # Ids as SQLite stores them, JSON as text, times in SQLAlchemy's text format.
    assert values["p_id"] == ID.replace("-", "")
    assert values["p_error"] == '{"k": 1}'
    assert values["p_now"] == "2026-12-06 12:00:00.123456"
    assert compiled.parameters({"p_id": ID, "p_error": None, "p_now": NOW})["p_error"] is None


class _EqualToAnything(str):
    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash(ID)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()])
def test_ids_are_converted_alike_before_and_after_the_cache_of_ids_fills(
    dialect: sa.engine.Dialect,
) -> None:
    compiled = compile_statement(_finish(), dialect)

    def written(value: object) -> object:
        return compiled.parameters({"p_id": value, "p_error": None, "p_now": NOW})["p_id"]

    expected = ID.replace("-", "") if dialect.name == "sqlite" else ID
    # Well past the ids remembered (4,096), so the cache is emptied on the way.
    others = [str(uuid.UUID(int=number)) for number in range(5000)]
    for _ in range(2):
        assert written(ID) == expected
        # A subclass of str is never taken from the cache either: it may compare equal to
        # an id it is not (here, to ID, just remembered).
        with pytest.raises((ValueError, TypeError)):  # what uuid.UUID makes of it
            written(_EqualToAnything("garbage"))
        for other in others:
            assert written(other) == (other.replace("-", "") if dialect.name == "sqlite" else other)
        # Text that is not a canonical id is never taken from the cache: it is parsed (and
        # refused when malformed) every time.
        assert written(ID.upper()) in (expected, uuid.UUID(ID))
        with pytest.raises(ValueError, match="base 16"):
            written(ID[:-1] + "x")
        with pytest.raises(ValueError, match="badly formed"):
            written(ID + " ")


def test_parameters_without_a_key_the_statement_needs_raise_key_error() -> None:
    compiled = compile_statement(_finish(), sqlite.dialect())
    with pytest.raises(KeyError, match="p_now"):
        compiled.parameters({"p_id": ID, "p_error": None})


def test_rows_are_converted_column_by_column_and_null_stays_none() -> None:
    compiled = compile_statement(_finish(), sqlite.dialect())
    rows = compiled.convert(
        [
            (ID.replace("-", ""), "completed", '{"k": 1}', "2026-12-06 12:00:00.123456"),
            (ID.replace("-", "").upper(), "failed", None, "2026-12-06 12:00:00.123456"),
        ]
    )
    assert rows == [
        {"id": ID, "status": "completed", "error": {"k": 1}, "updated_at": NOW},
        {"id": ID, "status": "failed", "error": None, "updated_at": NOW},
    ]


def test_a_row_of_another_length_is_refused() -> None:
    compiled = compile_statement(_finish(), sqlite.dialect())
    with pytest.raises(ValueError, match="unpack"):
        compiled.convert([(ID, "completed")])


def test_a_statement_without_result_columns_converts_no_rows() -> None:
    statement = attempts.delete().where(attempts.c.id == sa.bindparam("p_id"))
    compiled = compile_statement(statement, postgresql.dialect())  # type: ignore[no-untyped-call]
    assert compiled.columns is None
    assert compiled.convert([(1,)]) == []
    assert compiled.parameters({"p_id": ID}) == {"p_id": ID}


def test_column_names_that_are_not_identifiers_are_keys_all_the_same() -> None:
    table = sa.table("t", sa.column("odd name", sa.Integer), sa.column("trigger", sa.String))
    statement = sa.select(table.c["odd name"], table.c.trigger).where(
        table.c.trigger == sa.bindparam("the key")
    )
    compiled = compile_statement(statement, sqlite.dialect())
    assert compiled.parameters({"the key": "api"}) == {"the key": "api"}
    assert compiled.convert([(1, "api")]) == [{"odd name": 1, "trigger": "api"}]


def test_a_job_status_is_written_in_the_statement_and_no_other_value_is_taken() -> None:
    statement = sa.select(jobs.c.id).where(job_status_is("queued"))
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = compile_statement(statement, dialect)
        assert "squidmesh_jobs.status = 'queued'" in compiled.sql
        assert compiled.parameters({}) == {}  # no parameter for SQLite to plan around
    with pytest.raises(ValueError, match='not a job status: "queued\'; --"'):
        job_status_is("queued'; --")  # type: ignore[arg-type]


def _outcome(convert: Callable[[Any], Any], value: Any) -> tuple[str, str]:
    """What converting ``value`` gives: the result's repr, or the exception's class and text."""
    try:
        return "value", repr(convert(value))
    except (ValueError, TypeError, OverflowError) as exc:
        return type(exc).__name__, str(exc)


def _time_to_sqlite_as_before(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: squidmesh stores aware UTC datetimes")
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(" ", "microseconds")


def _time_from_sqlite_as_before(value: object) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
_TIMES = [
    datetime(2026, 12, 6, 12, 0, 0, micro, tzinfo=zone)
    for zone in _ZONES
    for micro in (0, 1, 123456, 999999)
] + [
    datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=3))),  # before year 1 in UTC
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, fold=1, tzinfo=UTC),
    datetime(2026, 12, 6, 12, 0),  # noqa: DTZ001 - naive: refused
]


@pytest.mark.parametrize("value", _TIMES, ids=repr)
def test_a_time_is_written_as_it_was_before_the_shortcut(value: datetime) -> None:
    # Each written text is read back as the same instant, in UTC.
    assert _outcome(_time_to_sqlite, value) == _outcome(_time_to_sqlite_as_before, value)
    # (twice: the second call is answered by the last-converted cache)
    assert _outcome(_time_to_sqlite, value) == _outcome(_time_to_sqlite_as_before, value)
    kind, _ = _outcome(_time_to_sqlite_as_before, value)
    if kind == "value":
        text = _time_to_sqlite(value)
        assert _time_from_sqlite(text) == value
        assert _time_from_sqlite(text).tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-06 12:00:00.123456",
        "2026-12-06 12:00:00",
        "2026-12-06 12:00:00.5",
        "2026-12-06T12:00:00.123",
        "2026-12-06 12:00",
        "2026-12-06",
        "2026-12-06 12:00:00+02:00",
        "2026-12-06 12:00:00.000001-05:30",
        "2026-12-06 12:00:00Z",
        "2026-12-06 12:00:00+00:00",
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59.999999",
        "not a time",
        "",
        # 26 characters, the written length, but not the written form:
        "2026-12-06T12:00:00.1+0530",
        "2026-12-06 12:00:00.12345Z",
        "20261206T120000.123456 890",
        "2026-12-06 12:00,007123:56",
        "2026-12-06 12:00:00.12345a",
        "2026-02-30 12:00:00.123456",
        datetime(2026, 12, 6, 12, 0),  # noqa: DTZ001 - a naive value read
        datetime(2026, 12, 6, 12, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
    ids=repr,
)
def test_a_time_is_read_as_it_was_before_the_shortcut(value: object) -> None:
    assert _outcome(_time_from_sqlite, value) == _outcome(_time_from_sqlite_as_before, value)
    kind, _ = _outcome(_time_from_sqlite, value)
    if kind == "value":
        assert _time_from_sqlite(value).tzinfo is UTC


def test_text_of_the_written_shape_is_read_as_it_was_before_the_shortcut() -> None:
    # The shortcut takes only text shaped as written ("dddd-dd-dd dd:dd:dd.dddddd"): in such
    # text, every other character drawn from what times are made of, or a stray one.
    chosen = random.Random(14)  # noqa: S311 - test data, not secrets
    alphabet = "0123456789" * 3 + "-: .T+Z,a"
    written = "2026-12-06 12:00:00.123456"
    for _ in range(20_000):
        text = "".join(
            char if char in "-: ." and chosen.random() < 0.9 else chosen.choice(alphabet)
            for char in written
        )
        assert _outcome(_time_from_sqlite, text) == _outcome(_time_from_sqlite_as_before, text), (
            text
        )


_IDS: list[object] = [ID, str(uuid.UUID(int=7)), uuid.UUID(ID), None, _EqualToAnything("garbage")]
_JSON: list[object] = [{"k": 1}, [1, "a"], "text", 1, 1.5, True, None, sa.null(), sa.JSON.NULL]


def _through_generated(dialect: sa.engine.Dialect) -> Callable[[str, object], tuple[str, str]]:
    """Convert one value as the generated ``parameters`` do, given its variable's name."""
    compiled = compile_statement(_finish(), dialect)
    others = {"p_id": ID, "p_error": None, "p_now": NOW}
    return lambda name, value: _outcome(
        lambda v: compiled.parameters({**others, name: v})[name], value
    )


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()], ids=str)
def test_generated_parameters_give_what_each_converter_gives(dialect: sa.engine.Dialect) -> None:
    # The generated code answers the common values without calling the converter: an id
    # already seen, a JSON value, the last time written, a UTC datetime.
    generated = _through_generated(dialect)
    converters = {
        name: process for name, _, process in compile_statement(_finish(), dialect).variables
    }
    cases = [("p_id", value) for value in _IDS] + [("p_error", value) for value in _JSON]
    cases += [("p_now", value) for value in [*_TIMES, None, NOW]]
    for name, value in cases:
        process = converters[name]
        assert process is not None
        for _ in range(2):  # the second time, the value is the one seen or written last
            assert generated(name, value) == _outcome(process, value), (name, value)
    # The time written last is never taken for None (nor None for it).
    assert generated("p_now", NOW) == ("value", repr(converters["p_now"](NOW)))  # type: ignore[misc]
    assert generated("p_now", None) == ("value", "None")


@pytest.mark.parametrize(
    "value",
    [
        *_TIMES,
        datetime(2026, 12, 6, 12, 0, tzinfo=ZoneInfo("UTC")),
        datetime(2026, 12, 6, 12, 0, tzinfo=ZoneInfo("Europe/Paris")),
        None,
    ],
    ids=repr,
)
def test_postgresql_times_are_converted_as_the_column_type_converts_them(value: Any) -> None:
    # psycopg takes and gives datetimes as they are: the column type's own conversions,
    # without SQLAlchemy's layers, in the generated code and in the converters.
    dialect = postgresql.psycopg.dialect()
    compiled = compile_statement(_finish(), dialect)
    assert dict(compiled.converters)["updated_at"] is _time_from_native
    assert {name: process for name, _, process in compiled.variables}["p_now"] is _time_to_native
    column_type = UTCDateTime()
    generated = _through_generated(dialect)
    assert generated("p_now", value) == _outcome(
        lambda v: column_type.process_bind_param(v, dialect), value
    )
    if value is None:
        return
    read = _outcome(
        lambda v: compiled.convert([(ID, "completed", None, v)])[0]["updated_at"], value
    )
    assert read == _outcome(lambda v: column_type.process_result_value(v, dialect), value)
    if read[0] == "value":
        assert _read_time(compiled, value).tzinfo is UTC


def _read_time(compiled: Compiled, value: object) -> Any:
    return compiled.convert([(ID, "completed", None, value)])[0]["updated_at"]


def test_rows_read_through_generated_code_give_what_each_converter_gives() -> None:
    compiled = compile_statement(_finish(), sqlite.dialect())
    converters = dict(compiled.converters)
    texts = ['{"k": 1}', "[1]", '"s"', "1", "1.5", "true", "null", "not json", 2, 2.5]
    for text in texts:
        read = _outcome(lambda v: compiled.convert([(ID, "completed", v, None)])[0]["error"], text)
        assert read == _outcome(converters["error"], text), text


def test_the_first_time_a_process_converts_is_none_as_well() -> None:
    # Before any time was written, the last one remembered is nobody's: None is still NULL.
    script = (
        "from tests.unit.test_compiled import _finish, ID\n"
        "from squidmesh_sdk.store.compiled import compile_statement\n"
        "from sqlalchemy.dialects import sqlite\n"
        "values = {'p_id': ID, 'p_error': None, 'p_now': None}\n"
        "print(compile_statement(_finish(), sqlite.dialect()).parameters(values)['p_now'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout == "None\n"


class _Shouted(sa.types.TypeDecorator[str]):
    impl = sa.String
    cache_ok = True

    def bind_processor(self, dialect: sa.engine.Dialect) -> Any:
        return str.upper  # a converter that cannot be weakly referenced


def test_a_converter_without_an_inline_expression_is_called_whatever_it_is() -> None:
    table = sa.table("t", sa.column("name", _Shouted()))
    statement = table.update().values(name=sa.bindparam("p_name"))
    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):
        compiled = compile_statement(statement, dialect)
        assert compiled.parameters({"p_name": "ada"}) == {"p_name": "ADA"}
