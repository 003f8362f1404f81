"""Declarative route conditions: comparisons an operator can read, evaluated by the runtime.

A route may fire only when a condition holds (``wf.transition(check, on="ok", to=review,
when=when("output.total").greater_than(1000))``). Conditions are data, not code: they appear in
the JSON and Mermaid exports and in run history, and the compiler checks them.

A condition reads a dotted path whose first segment says where from:

* ``output.…`` — what the step just returned (before it is stored under its ``output=`` key);
* ``context.…`` — the run context, with the step's output merged in;
* ``payload.…`` — the run's trigger payload.

Comparisons: ``equals``, ``not_equals``, ``is_in`` (JSON op ``"in"``), ``greater_than``,
``less_than`` and ``exists``. A path that is missing makes every comparison but ``exists``
false; comparing values of different kinds (a string with a number) is false, not an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "CONDITION_OPS",
    "CONDITION_ROOTS",
    "Condition",
    "ConditionOp",
    "PathCondition",
    "condition_problems",
    "evaluate",
    "resolve_path",
    "when",
]

ConditionOp = Literal["equals", "not_equals", "in", "greater_than", "less_than", "exists"]
"""The comparisons a condition can make."""

CONDITION_OPS: Final = frozenset(
    {"equals", "not_equals", "in", "greater_than", "less_than", "exists"}
)
CONDITION_ROOTS: Final = ("output", "context", "payload")
"""Where a condition's path may start."""

_SYMBOLS: Final = {
    "equals": "==",
    "not_equals": "!=",
    "in": "in",
    "greater_than": ">",
    "less_than": "<",
}


@dataclass(frozen=True, slots=True)
class Condition:
    """A comparison of the value at ``path`` with ``value`` (``exists`` takes no value).

    Build one with :func:`when`; the compiler validates it (see :func:`condition_problems`).

    Attributes:
        path: Dotted path, starting with ``output``, ``context`` or ``payload``.
        op: The comparison.
        value: What the value is compared with (a list for ``in``; ``None`` for ``exists``).
    """

    path: str
    op: ConditionOp
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as exported and recorded in run history."""
        data: dict[str, Any] = {"path": self.path, "op": self.op}
        if self.op != "exists":
            data["value"] = list(self.value) if self.op == "in" else self.value
        return data

    def describe(self) -> str:
        """A short human form, such as ``output.total > 1000``."""
        if self.op == "exists":
            return f"{self.path} exists"
        value = list(self.value) if self.op == "in" else self.value
        return f"{self.path} {_SYMBOLS[self.op]} {_literal(value)}"


class PathCondition:
    """The value at a path, waiting for its comparison; returned by :func:`when`."""

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        self._path = path

    def equals(self, value: Any) -> Condition:
        """True when the value equals ``value``."""
        return Condition(self._path, "equals", value)

    def not_equals(self, value: Any) -> Condition:
        """True when the value is present and differs from ``value``."""
        return Condition(self._path, "not_equals", value)

    def is_in(self, values: Sequence[Any]) -> Condition:
        """True when the value is one of ``values``."""
        return Condition(self._path, "in", tuple(values) if _is_list(values) else values)

    def greater_than(self, value: float) -> Condition:
        """True when the value is a number greater than ``value``."""
        return Condition(self._path, "greater_than", value)

    def less_than(self, value: float) -> Condition:
        """True when the value is a number less than ``value``."""
        return Condition(self._path, "less_than", value)

    def exists(self) -> Condition:
        """True when the path is present (even if its value is ``null``)."""
        return Condition(self._path, "exists")


def when(path: str) -> PathCondition:
    """Start a route condition on the value at ``path``.

    Example:
        ``when("output.total").greater_than(1000)`` or
        ``when("payload.country").is_in(["FR", "DE"])``.
    """
    return PathCondition(path)


def condition_problems(condition: object) -> list[str]:
    """What is wrong with ``condition`` (nothing when it can be evaluated)."""
    if not isinstance(condition, Condition):
        return [f"when= takes a condition built with when(...), got {condition!r}"]
    problems: list[str] = []
    path = condition.path
    if not isinstance(path, str) or not path:
        return [f"condition path must be a non-empty string, got {path!r}"]
    root, *rest = path.split(".")
    if root not in CONDITION_ROOTS or not rest or not all(rest):
        problems.append(
            f"condition path {path!r} must start with one of {', '.join(CONDITION_ROOTS)} and "
            "name a key after it (such as 'output.total')"
        )
    op, value = condition.op, condition.value
    if op not in CONDITION_OPS:
        problems.append(f"condition op {op!r} must be one of {', '.join(sorted(CONDITION_OPS))}")
    elif op == "in":
        if not isinstance(value, tuple | list):
            problems.append(f"'in' compares with a list of values, got {value!r}")
        elif not all(_json_scalar(item) for item in value):
            problems.append(f"'in' values must be strings, numbers, booleans or null: {value!r}")
    elif op in ("greater_than", "less_than"):
        if not _number(value):
            problems.append(f"{op!r} compares with a finite number, got {value!r}")
    elif op in ("equals", "not_equals") and not _json_scalar(value):
        problems.append(f"{op!r} compares with a string, number, boolean or null, got {value!r}")
    return problems


def resolve_path(scope: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """Follow dotted ``path`` through nested mappings; ``(found, value)``."""
    current: Any = scope
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def evaluate(condition: Condition, scope: Mapping[str, Any]) -> tuple[bool, Any]:
    """Whether ``condition`` holds in ``scope`` (keys ``output``, ``context``, ``payload``).

    Returns:
        ``(matched, observed)``: the value found at the path (``None`` when missing), which
        run history records beside the decision.
    """
    found, value = resolve_path(scope, condition.path)
    op, expected = condition.op, condition.value
    if op == "exists":
        return found, value
    if not found:
        return False, None
    if op == "equals":
        return _same(value, expected), value
    if op == "not_equals":
        return not _same(value, expected), value
    if op == "in":
        return any(_same(value, item) for item in expected), value
    if not _number(value):
        return False, value
    return (value > expected if op == "greater_than" else value < expected), value


def _same(left: Any, right: Any) -> bool:
    # JSON has no separate boolean and number kinds in Python's eyes (True == 1): keep them
    # apart so that a flag is never equal to a count.
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | bool) or _number(value)


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _literal(value: Any) -> str:
    return json.dumps(value)
