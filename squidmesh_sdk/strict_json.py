r"""Strict JSON: the values squidmesh stores the same way on SQLite and PostgreSQL.

Python's ``json`` module writes ``NaN`` and ``Infinity`` (which are not JSON), PostgreSQL's
``jsonb`` refuses NUL characters (``"\x00"``) and lone surrogates, and deep nesting exhausts
recursion in encoders and decoders. Payloads, step outputs and manual-action metadata are
checked here before anything is written, so a value is either refused at once with the path
to the culprit, or stored identically on both databases.

Allowed: ``dict`` with ``str`` keys, ``list`` / ``tuple``, ``str``, ``int``, finite ``float``,
``bool`` and ``None``, nested at most :data:`MAX_DEPTH` containers deep. ``bytes`` that decode
as UTF-8 are allowed where a value is converted to JSON afterwards (step outputs): they are
stored as text. Other objects are left to the caller's converter (pydantic).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MAX_DEPTH", "Problem", "find_problem", "path_join", "safe_text", "scan"]

MAX_DEPTH = 64
"""The deepest nesting of mappings and lists accepted (the top-level mapping counts as 1)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a value is not strict JSON, and where.

    Attributes:
        path: A JSON path such as ``$.items[2].price`` (the root is whatever the caller named).
        reason: What is wrong there.
    """

    path: str
    reason: str


def path_join(path: str, key: str | int) -> str:
    """``path`` extended by a mapping key (``.key`` or ``["odd key"]``) or a list index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key.isidentifier() and key.isascii():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def find_problem(value: object, *, root: str = "$", max_depth: int = MAX_DEPTH) -> Problem | None:
    """The first place where ``value`` is not strict JSON, or ``None`` when it all is.

    Iterative, so arbitrarily deep input cannot exhaust the interpreter's recursion limit. It
    runs on every payload and step output, so the path of a value is kept as its keys and only
    spelt out for the problem found.
    """
    return scan(value, root=root, max_depth=max_depth)[0]


def scan(
    value: object, *, root: str = "$", max_depth: int = MAX_DEPTH
) -> tuple[Problem | None, bool]:
    """:func:`find_problem`'s answer, and whether ``value`` is JSON's own.

    JSON's own: made of nothing but ``dict`` with ``str`` keys, ``list``, ``str``, ``int``,
    ``float``, ``bool`` and ``None``, exactly these classes (no subclass, tuple, bytes or other
    object), so that converting it to JSON values (pydantic's ``to_jsonable_python``) gives it
    back unchanged, and what :func:`find_problem` said of it holds of the conversion too. The
    second answer means nothing when the first is a problem.
    """
    own = True
    stack: list[tuple[object, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, keys = stack.pop()
        kind = type(item)
        if kind is int or kind is bool or item is None:
            continue
        if kind is str:
            reason = _text_problem(item)  # type: ignore[arg-type]
        elif kind is dict or kind is list or isinstance(item, Mapping | list | tuple):
            if len(keys) + 1 > max_depth:
                return Problem(_path(root, keys), f"nesting deeper than {max_depth} levels"), own
            children: list[tuple[object, tuple[str | int, ...]]] = []
            # ``kind is dict`` first: an ABC's isinstance is a Python call (``abc``'s).
            if kind is dict or isinstance(item, Mapping):
                own = own and kind is dict
                mapping: Mapping[object, object] = item  # type: ignore[assignment]
                for key, child in mapping.items():
                    if not isinstance(key, str):
                        return Problem(_path(root, keys), f"key {key!r} is not a string"), own
                    own = own and key.__class__ is str
                    bad_key = _text_problem(key)
                    if bad_key is not None:
                        return Problem(_path(root, (*keys, key)), f"the key {bad_key}"), own
                    children.append((child, (*keys, key)))
            else:
                own = own and kind is list
                sequence: list[object] | tuple[object, ...] = item  # type: ignore[assignment]
                children = [(child, (*keys, i)) for i, child in enumerate(sequence)]
            stack.extend(reversed(children))
            continue
        else:
            own = own and kind is float
            reason = _scalar_problem(item)
        if reason is not None:
            return Problem(_path(root, keys), reason), own
    return None, own


def _path(root: str, keys: tuple[str | int, ...]) -> str:
    path = root
    for key in keys:
        path = path_join(path, key)
    return path or "$"


def safe_text(text: str) -> str:
    """``text`` with NUL characters and lone surrogates escaped, so any database stores it."""
    if _text_problem(text) is None:
        return text
    escaped = text.replace("\x00", "\\x00")
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def _scalar_problem(item: object) -> str | None:
    if isinstance(item, float) and not math.isfinite(item):
        return f"{item!r} is not a JSON number"
    if isinstance(item, str):
        return _text_problem(item)
    if isinstance(item, bytes | bytearray):
        try:
            decoded = bytes(item).decode("utf-8")
        except UnicodeDecodeError:
            return "bytes that are not UTF-8 text"
        return _text_problem(decoded)
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\x00)"
    if text.isascii():  # no surrogate, and no encoded copy made to find out
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None
