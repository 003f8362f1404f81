"""``strict_json.scan``: the problem, and whether a value is JSON's own (converted unchanged)."""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic_core import to_jsonable_python

from squidmesh_sdk.strict_json import find_problem, scan


class Text(str):
    """A subclass of ``str``: JSON's own only as its base class."""


class Number(float):
    """A subclass of ``float``."""


OWN = [
    {},
    {"a": 1, "b": [1, 2.5, "x", None, True, False, 1.0, -0.0], "c": {"d": []}},
    {"é": "ünïcode", "n": 10**30, "tiny": 5e-324},
]
NOT_OWN = [
    {"t": (1, 2)},
    {"b": b"bytes"},
    {"when": datetime(2026, 12, 7, tzinfo=UTC)},
    {"o": OrderedDict(a=1)},
    {Text("k"): 1},
    {"v": Text("v")},
    {"l": [[{"deep": (1,)}]]},
    {"flag": 1.0, "set": {1}},
    {"n": Number(1.5)},
    {"b": [True, 2, bytearray(b"x")]},
]


@pytest.mark.parametrize("value", OWN)
def test_json_s_own_values_convert_unchanged_and_scan_says_so(value: dict[str, Any]) -> None:
    assert scan(value) == (None, True)
    # repr, not ==: True == 1 == 1.0, but the conversion must keep each value's class.
    assert repr(to_jsonable_python(value)) == repr(value)


@pytest.mark.parametrize("value", NOT_OWN)
def test_anything_else_is_not_json_s_own(value: dict[str, Any]) -> None:
    problem, own = scan(value)
    assert problem is None
    assert not own


def test_scan_finds_what_find_problem_finds() -> None:
    value = {"a": [1, {"b": math.inf}]}
    problem, _ = scan(value)
    assert problem is not None
    assert problem == find_problem(value)
    assert problem.path == "$.a[1].b"
