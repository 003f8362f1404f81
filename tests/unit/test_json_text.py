"""The hot path's JSON text is exactly ``json.dumps`` and ``json.loads``'s."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

from squidmesh_sdk.store import json_text
from squidmesh_sdk.store.compiled import compile_statement
from squidmesh_sdk.store.schema import attempts

VALUES: list[Any] = [
    {},
    [],
    {"a": 1, "b": [1, 2.5, -0.0, 1e300, True, False, None], "c": {"d": "e"}},
    {"unicode": "ünïcødé ✓ 😀", "quote": 'say "hi"\n\t\\', "ctl": "\x01\x1f"},
    {"big": 2**80, "neg": -(2**70), "float": 0.1 + 0.2},
    {"nan": math.nan, "inf": math.inf, "-inf": -math.inf},  # strict_json refuses them first
    {"1": "numeric-looking key", "": "empty key"},
    [[[[["deep"]]]]],
    "a string",
    12,
    None,
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_writes_what_json_dumps_writes_and_loads_reads_it_back(value: Any) -> None:
    text = json_text.dumps(value)
    assert text == json.dumps(value)
    assert json.dumps(json_text.loads(text)) == text


def test_dumps_refuses_what_json_dumps_refuses() -> None:
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        json_text.dumps({"a": {1, 2}})
    with pytest.raises(TypeError, match="keys must be str, int, float, bool or None"):
        json_text.dumps({(1, 2): "tuple key"})
    # Without json.dumps's check for circular references, a container that contains itself
    # still fails, on the encoder's recursion limit; and the encoder works on afterwards.
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(RecursionError):
        json_text.dumps(looped)
    assert json_text.dumps({"after": [1]}) == '{"after": [1]}'


@pytest.mark.parametrize("text", ['  {"a": 1}', '{"a": 1}\n', "NaN", '"only a string"', "[1, 2]"])
def test_loads_reads_what_json_loads_reads(text: str) -> None:
    assert json.dumps(json_text.loads(text)) == json.dumps(json.loads(text))


@pytest.mark.parametrize("text", ['{"a": 1} trailing', "", "{", '{"a": }', "\ufeff{}", "[1,2"])
def test_loads_refuses_what_json_loads_refuses_with_the_same_message(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as refused:
        json_text.loads(text)
    assert (refused.value.msg, refused.value.pos) == (expected.value.msg, expected.value.pos)


def _psycopg(**options: Any) -> Dialect:
    """psycopg's dialect (made by an engine that never connects)."""
    return sa.create_engine("postgresql+psycopg://nobody@localhost/none", **options).dialect


def _write_error() -> sa.Update:
    return (
        attempts.update()
        .where(attempts.c.id == sa.bindparam("p_id"))
        .values(error=sa.bindparam("p_error"))
        .returning(attempts.c.error)
    )


def test_sqlite_statements_use_them_unless_the_engine_has_its_own_json_functions() -> None:
    plain = compile_statement(_write_error(), sqlite.dialect())
    params = {"p_id": "0190e3a4-0000-7000-8000-000000000001", "p_error": {"k": "ü"}}
    assert plain.parameters(params)["p_error"] == '{"k": "\\u00fc"}'
    assert plain.parameters({**params, "p_error": None})["p_error"] is None
    assert plain.parameters({**params, "p_error": sa.JSON.NULL})["p_error"] == "null"
    assert plain.convert([('{"k": [1, 2]}',), (3,)]) == [{"error": {"k": [1, 2]}}, {"error": 3}]
    # A host's engine with json_serializer / json_deserializer keeps its own.
    own = sqlite.dialect(
        json_serializer=lambda value: "custom",
        json_deserializer=lambda text: {"custom": text},
    )
    custom = compile_statement(_write_error(), own)
    assert custom.parameters(params)["p_error"] == "custom"
    assert custom.convert([("{}",)]) == [{"error": {"custom": "{}"}}]


def test_psycopg_statements_write_json_text_cast_to_jsonb_unless_the_engine_has_its_own() -> None:
    from psycopg.types.json import Jsonb

    params = {"p_id": "0190e3a4-0000-7000-8000-000000000001", "p_error": {"k": [1, "ü"]}}
    compiled = compile_statement(_write_error(), _psycopg())
    # A string of no type, which the statement's cast makes JSONB on the server.
    assert compiled.parameters(params)["p_error"] == '{"k": [1, "\\u00fc"]}'
    assert "%(p_error)s::JSONB" in compiled.sql
    assert compiled.parameters({**params, "p_error": None})["p_error"] is None
    # Scalars too, so that the parameter has the same (no) type whatever the value.
    assert compiled.parameters({**params, "p_error": "ü"})["p_error"] == '"\\u00fc"'
    assert compiled.parameters({**params, "p_error": 2})["p_error"] == "2"
    own = _psycopg(json_serializer=lambda value: "custom")
    kept = compile_statement(_write_error(), own).parameters(params)["p_error"]
    assert isinstance(kept, Jsonb)
    assert kept.dumps is None  # psycopg then uses the serializer SQLAlchemy registered


_BYTES = [
    b'{"k": [1, "\xc3\xbc", null, true, 1.5e3]}',
    b" [1, 2] ",
    b'"\xed\xa0\x80"',  # a lone surrogate in UTF-8: json.loads reads it (surrogatepass)
    '{"k": "\u00fc"}'.encode("utf-8-sig"),
    '{"k": "\u00fc"}'.encode("utf-16"),
    '{"k": 1}'.encode("utf-16-le"),
    '{"k": 1}'.encode("utf-32"),
    b"\xc3",  # not UTF-8
    b"",
    b"nul",
    b'{"k": 1} x',
    b"\xef",
    '{"k": 1}'.encode("utf-16-be"),
    '{"k": 1}'.encode("utf-32-be"),
    '{"k": 1}'.encode("utf-32-le"),
    b"1\x00",  # two bytes, the second NUL: UTF-16-LE to json.loads
    b"\x001",
    b"[1\x00",  # three bytes: no NUL test, so UTF-8
]


def _outcome(read: Callable[[bytes], object], data: bytes) -> object:
    """What ``read(data)`` returns, or the type and message of the error it raises."""
    try:
        return read(data)
    except (ValueError, UnicodeDecodeError) as error:
        return (type(error), str(error))


@pytest.mark.parametrize("data", _BYTES)
def test_loads_bytes_returns_or_raises_what_json_loads_does(data: bytes) -> None:
    assert _outcome(json_text.loads_bytes, data) == _outcome(json.loads, data)


def test_none_is_sql_null_only_in_a_column_made_with_none_as_null() -> None:
    table = sa.Table(
        "documents",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("as_null", sa.JSON(none_as_null=True)),
        sa.Column("as_json", sa.JSON()),
    )
    statement = table.update().values(as_null=sa.bindparam("a"), as_json=sa.bindparam("b"))
    for dialect in (sqlite.dialect(), _psycopg()):
        values = compile_statement(statement, dialect).parameters({"a": None, "b": None})
        assert values["a"] is None, dialect.name
        json_null = values["b"]
        assert (json_null if dialect.name == "sqlite" else json_null.obj) in ("null", None)
        assert json_null is not None, dialect.name


def test_a_json_column_that_is_not_jsonb_on_postgresql_keeps_sqlalchemys_writer() -> None:
    from psycopg.types.json import Json, Jsonb

    table = sa.Table(
        "documents",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("doc", sa.JSON(none_as_null=True)),  # PostgreSQL's json, not jsonb
    )
    statement = table.update().values(doc=sa.bindparam("d"))
    written = compile_statement(statement, _psycopg()).parameters({"d": {"k": 1}})["d"]
    assert isinstance(written, Json)
    assert not isinstance(written, Jsonb)


def test_loads_bytes_agrees_with_json_loads_on_every_short_prefix_of_an_encoding() -> None:
    # Every string of 1 to 4 bytes over the bytes that tell JSON's encodings apart (NUL, the
    # BOMs' bytes) and a few ordinary ones: read or refused as json.loads does.
    alphabet = [0x00, 0x01, 0x22, 0x31, 0x5B, 0x7B, 0xBB, 0xBF, 0xEF, 0xFE, 0xFF]
    for length in range(1, 5):
        for data in map(bytes, itertools.product(alphabet, repeat=length)):
            assert _outcome(json_text.loads_bytes, data) == _outcome(json.loads, data), data


def test_loads_bytes_takes_what_json_loads_takes_and_refuses_what_it_refuses() -> None:
    assert json_text.loads_bytes(bytearray(b'{"k": 1}')) == {"k": 1}
    with pytest.raises(TypeError) as expected:
        json.loads(memoryview(b"{}"))  # type: ignore[arg-type]
    with pytest.raises(TypeError) as refused:
        json_text.loads_bytes(memoryview(b"{}"))  # type: ignore[arg-type]
    assert str(refused.value) == str(expected.value)
    with pytest.raises(UnicodeDecodeError) as not_utf8:
        json_text.loads_bytes(b'"\xc3"')
    assert not_utf8.value.__context__ is None  # as json.loads raises it


def test_loads_bytes_reads_text_too() -> None:
    # psycopg's type for a JSON loader takes text or bytes.
    assert json_text.loads_bytes('{"k": ["ü"]}') == {"k": ["ü"]}
