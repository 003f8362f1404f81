"""Flow control values: job priority bounds, per-key concurrency limits and queue rate limits.

These are plain values; the compiler checks what a workflow declares
(:class:`ConcurrencyLimit`), the client what an operator sets (:class:`RateLimit`). The built-in
database queue enforces them when a worker claims jobs (see docs/workers.md, "Flow control").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from squidmesh_sdk.definition.conditions import resolve_path

__all__ = [
    "CONCURRENCY_KEY_ROOTS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "ConcurrencyLimit",
    "RateLimit",
    "concurrency_limit_problems",
    "concurrency_value",
    "priority_problem",
]

MIN_PRIORITY: Final = -1000
"""The lowest priority a run may have."""
MAX_PRIORITY: Final = 1000
"""The highest priority a run may have."""

CONCURRENCY_KEY_ROOTS: Final = ("payload", "context")
"""Where a concurrency key's path may start: the run's payload, or its context (the outputs of
the steps before the one queued). Route conditions also read ``output``; a key cannot, since
it is evaluated when the step is queued, before it has an output."""


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most ``limit`` steps sharing the value at ``key`` run at once.

    Example:
        ``Workflow("sync", triggers=[...], concurrency=ConcurrencyLimit("payload.customer_id",
        limit=2))``: whatever the number of workers, at most two steps of runs for one
        customer run at the same time; the others wait in the queue, and other customers'
        steps go ahead of them.

    The key's value is read when a step's job is queued (``payload.…`` when the run starts,
    ``context.…`` as the run context is then), and stored on the job; the database queue's
    claim counts running jobs with the same stored key. Only the built-in database queue
    enforces it.

    Attributes:
        key: Dotted path to the value, as in route conditions: ``payload.customer_id`` or
            ``context.account.id``. The value must be a string, number or boolean.
        limit: Most steps with the same value running at once (1 or more).
        scope: Namespace of the key: two workflows declaring the same scope share the limit
            (``None``: the workflow's name, so each workflow counts on its own).
    """

    key: str
    limit: int
    scope: str | None = None

    def describe(self) -> str:
        """A short human form, such as ``payload.customer_id <= 2``."""
        scope = f"{self.scope}:" if self.scope is not None else ""
        return f"{scope}{self.key} <= {self.limit} running"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as exported with the graph."""
        data: dict[str, Any] = {"key": self.key, "limit": self.limit}
        if self.scope is not None:
            data["scope"] = self.scope
        return data


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` jobs of a queue start per ``per`` (a token bucket, burst ``count``).

    Example:
        ``RateLimit(100, per=timedelta(minutes=1))``: 100 claims a minute at most; an idle
        queue may start 100 at once, then one every 0.6 s.

    Attributes:
        count: Jobs per period (1 or more).
        per: The period (positive).
    """

    count: int
    per: timedelta

    @property
    def period_seconds(self) -> float:
        """The period in seconds."""
        return self.per.total_seconds()

    def describe(self) -> str:
        """A short human form, such as ``100/60s``."""
        return f"{self.count}/{self.period_seconds:g}s"


def concurrency_limit_problems(limit: object) -> list[str]:
    """What is wrong with a declared ``concurrency=`` (nothing when it can be enforced)."""
    if not isinstance(limit, ConcurrencyLimit):
        return [f"concurrency= takes a ConcurrencyLimit(key=..., limit=...), got {limit!r}"]
    problems: list[str] = []
    path = limit.key
    if not isinstance(path, str) or not path:
        problems.append(f"concurrency key must be a non-empty dotted path, got {path!r}")
    else:
        root, *rest = path.split(".")
        if root not in CONCURRENCY_KEY_ROOTS or not rest or not all(rest):
            problems.append(
                f"concurrency key {path!r} must start with payload or context and name a key "
                "after it (such as 'payload.customer_id')"
            )
    if isinstance(limit.limit, bool) or not isinstance(limit.limit, int) or limit.limit < 1:
        problems.append(f"concurrency limit must be an integer of at least 1, got {limit.limit!r}")
    if limit.scope is not None and (not isinstance(limit.scope, str) or not limit.scope):
        problems.append(f"concurrency scope must be a non-empty string, got {limit.scope!r}")
    return problems


def concurrency_value(limit: ConcurrencyLimit, scope: Mapping[str, Any]) -> tuple[bool, str]:
    """The key's value in ``scope`` (keys ``payload`` and ``context``) as stored text.

    Returns:
        ``(found, text)``: ``found`` is false when the path is missing or its value is not a
        string, number or boolean (a list or mapping would make every run its own key, or
        an unreadable one); ``text`` is its JSON form then, which keeps ``1`` and ``"1"``
        apart.
    """
    found, value = resolve_path(scope, limit.key)
    if not found or not isinstance(value, str | int | float | bool):
        return False, ""
    return True, json.dumps(value, ensure_ascii=False)


def priority_problem(value: object) -> str | None:
    """What is wrong with a priority (``None``: an integer within the bounds)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"priority must be an integer, got {value!r}"
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        return f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {value}"
    return None
