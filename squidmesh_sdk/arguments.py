"""Checks of the arguments of public calls, so bad input raises ``InvalidArgument``.

Only what the deeper layers would otherwise reject with a bare ``TypeError``,
``AttributeError`` or a driver error (a NUL character in a name sent to PostgreSQL).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squidmesh_sdk import errors
from squidmesh_sdk.definition.flow import RateLimit, priority_problem
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.store.database import Database

__all__ = [
    "MAX_AGE",
    "MAX_COUNT",
    "MAX_IDEMPOTENCY_KEY",
    "age",
    "catch_up",
    "check_client",
    "check_collaborators",
    "idempotency_key",
    "positive_seconds",
    "priority",
    "queue_limits",
    "queue_name",
    "trigger_name",
    "wait_timeout",
    "worker_queues",
    "worker_settings",
    "workflow_name",
]

MAX_COUNT = 2**31 - 1
"""The largest count a setting stores (a 32-bit integer column)."""

MAX_IDEMPOTENCY_KEY = 200
"""The longest idempotency key, in characters (the column's width)."""


def workflow_name(workflow: object) -> str:
    """The name of a workflow given as an object, a definition or a name."""
    if isinstance(workflow, Workflow | WorkflowDefinition):
        return workflow.name
    if not isinstance(workflow, str) or "\x00" in workflow:
        raise errors.InvalidArgument(
            "workflow",
            f"workflow must be a Workflow, a WorkflowDefinition or a name, got {workflow!r}",
        )
    return workflow


def trigger_name(trigger: object) -> str:
    """``trigger``, checked to be a name."""
    if not isinstance(trigger, str) or "\x00" in trigger:
        raise errors.InvalidArgument("trigger", f"trigger must be a trigger name, got {trigger!r}")
    return trigger


def idempotency_key(key: object) -> str:
    """``key``, checked to be a non-empty text of at most :data:`MAX_IDEMPOTENCY_KEY` characters."""
    if not isinstance(key, str) or not key or "\x00" in key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise errors.InvalidArgument(
            "idempotency_key",
            f"idempotency_key must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} "
            f"characters without NUL, got {_short(key)}",
        )
    return key


def priority(value: object) -> int:
    """A run's priority: an integer within -1000..1000."""
    problem = priority_problem(value)
    if problem is not None:
        raise errors.InvalidArgument("priority", problem)
    assert isinstance(value, int)  # noqa: S101 - priority_problem checked it
    return value


def queue_limits(
    queue: object, concurrency: object, rate_limit: object
) -> tuple[str, int | None, RateLimit | None]:
    """The arguments of ``set_queue_limits``: a queue name, a concurrency >= 1, a rate."""
    queue = queue_name("queue", queue)
    if concurrency is not None and (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= MAX_COUNT
    ):
        raise errors.InvalidArgument(
            "concurrency",
            f"concurrency must be an integer from 1 to {MAX_COUNT:,}, got {_short(concurrency)}",
        )
    if rate_limit is not None:
        if not isinstance(rate_limit, RateLimit):
            raise errors.InvalidArgument(
                "rate_limit", f"rate_limit takes a RateLimit(count, per=...), got {rate_limit!r}"
            )
        count, per = rate_limit.count, rate_limit.per
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise errors.InvalidArgument(
                "rate_limit",
                f"a rate limit's count must be an integer from 1 to {MAX_COUNT:,}, got "
                f"{_short(count)}",
            )
        if not isinstance(per, timedelta) or per <= timedelta(0):
            raise errors.InvalidArgument(
                "rate_limit", f"a rate limit's period must be a positive timedelta, got {per!r}"
            )
    return queue, concurrency, rate_limit


def wait_timeout(timeout: object) -> float | None:
    """``timeout`` in seconds: ``None`` (no limit), or a number or ``timedelta`` >= 0."""
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise errors.InvalidArgument(
            "timeout",
            f"timeout must be None or a finite number of seconds >= 0 (or a timedelta), "
            f"got {timeout!r}",
        )
    return float(seconds)


MAX_QUEUE_NAME = 100
"""The longest queue name, in characters (the jobs' ``queue`` column's width)."""

MAX_WORKER_NAME = 200
"""The longest worker name, in characters (the jobs' ``locked_by``: PostgreSQL would refuse every
claim of a longer one, which the worker would take for the database being away)."""


def worker_queues(queues: object) -> tuple[str, ...]:
    """The queues a worker takes jobs from: a collection of names, not one name."""
    if isinstance(queues, str | bytes):
        raise errors.InvalidArgument(
            "queues",
            f"queues is a list of queue names, such as [{queues!r}], not one name",
        )
    if not isinstance(queues, Iterable):
        raise errors.InvalidArgument(
            "queues", f"queues must be a list of queue names, got {_short(queues)}"
        )
    names = tuple(queues)
    if not names:
        raise errors.InvalidArgument("queues", "a worker needs at least one queue")
    for name in names:
        queue_name("queues", name)
    return names


def queue_name(option: str, name: object) -> str:
    """A queue's name: a non-empty string that fits the jobs' ``queue`` column."""
    if not isinstance(name, str) or not name or len(name) > MAX_QUEUE_NAME or "\x00" in name:
        raise errors.InvalidArgument(
            option,
            f"a queue name is a non-empty string of at most {MAX_QUEUE_NAME} characters, "
            f"got {_short(name)}",
        )
    return name


def positive_seconds(option: str, value: object) -> float:
    """A finite number of seconds above 0."""
    if not _finite(value) or value <= 0:  # type: ignore[operator]
        raise errors.InvalidArgument(
            option, f"{option} must be a finite number of seconds > 0, got {_short(value)}"
        )
    return float(value)  # type: ignore[arg-type]


def catch_up(option: str, value: object) -> None:
    """A cron catch-up policy: ``"latest"``, ``"all"`` or ``"none"``."""
    if value not in ("latest", "all", "none"):
        raise errors.InvalidArgument(
            option, f"{option} must be 'latest', 'all' or 'none', got {_short(value)}"
        )


def worker_settings(
    *,
    concurrency: object,
    lease: object,
    poll_interval: object,
    shutdown_timeout: object,
    max_deliveries: object,
    name: object,
    purge_after: object,
    purge_interval: object,
) -> None:
    """Check a ``Worker``'s numbers and name (``InvalidArgument`` naming the first wrong one)."""
    for option, value, least in (
        ("concurrency", concurrency, 1),
        ("max_deliveries", max_deliveries, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise errors.InvalidArgument(
                option, f"{option} must be an integer >= {least}, got {_short(value)}"
            )
    for option, value in (
        ("lease", lease),
        ("poll_interval", poll_interval),
        ("purge_interval", purge_interval),
    ):
        positive_seconds(option, value)
    if not _finite(shutdown_timeout) or shutdown_timeout < 0:  # type: ignore[operator]
        raise errors.InvalidArgument(
            "shutdown_timeout",
            f"shutdown_timeout must be a finite number of seconds >= 0, got "
            f"{_short(shutdown_timeout)}",
        )
    if name is not None and (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > MAX_WORKER_NAME
        or "\x00" in name
    ):
        raise errors.InvalidArgument(
            "name",
            f"a worker's name is a non-empty string of at most {MAX_WORKER_NAME} characters, "
            f"got {_short(name)}",
        )
    if purge_after is not None:
        age("purge_after", purge_after)


MAX_AGE = timedelta(days=365 * 100)
"""The oldest a purge looks back: a hundred years (further, the cutoff would not be a date)."""


def age(option: str, value: object) -> timedelta:
    """A retention age: a positive ``timedelta`` of at most :data:`MAX_AGE`."""
    if not isinstance(value, timedelta) or not timedelta(0) < value <= MAX_AGE:
        raise errors.InvalidArgument(
            option,
            f"{option} must be a positive timedelta of at most 100 years, got {_short(value)}",
        )
    return value


def _finite(value: object) -> bool:
    """Whether ``value`` is a finite int or float (not a bool)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_EXECUTOR_METHODS = (
    "bind",
    "enqueue_step",
    "enqueue_steps",
    "enqueue_compensation",
    "enqueue_cron",
)


def check_collaborators(
    executor: object, clock: object, observers: object
) -> tuple[Any, ...] | None:
    """Check ``Client``'s executor, clock and observers before anything is built.

    Returns:
        The observers, as a tuple (``None`` for the default).
    """
    if executor is not None and not all(
        callable(getattr(executor, method, None)) for method in _EXECUTOR_METHODS
    ):
        raise errors.InvalidArgument(
            "executor",
            "executor must be an Executor, such as DatabaseExecutor() or InlineExecutor(), "
            f"got {_short(executor)}",
        )
    if clock is not None and not callable(getattr(clock, "now", None)):
        raise errors.InvalidArgument(
            "clock", f"clock must have a now() method (a Clock), got {_short(clock)}"
        )
    if observers is None:
        return None
    if isinstance(observers, str | bytes) or not isinstance(observers, Iterable):
        raise errors.InvalidArgument(
            "observers", f"observers must be a list of observers, got {_short(observers)}"
        )
    listed = tuple(observers)
    strays = [observer for observer in listed if not callable(getattr(observer, "emit", None))]
    if strays:
        raise errors.InvalidArgument(
            "observers",
            f"an observer has an emit(event) method, got {_short(strays[0])}",
        )
    return listed


def check_client(database: object, workflows: object, stale_step_timeout: object) -> None:
    """Check the arguments of :class:`~squidmesh_sdk.Client` before anything is built."""
    if not isinstance(database, str | sa.URL | Engine | Database):
        raise errors.InvalidArgument(
            "database", f"database must be a URL, an Engine or a Database, got {database!r}"
        )
    timeout = stale_step_timeout
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise errors.InvalidArgument(
            "stale_step_timeout",
            f"stale_step_timeout must be > 0 seconds, got {stale_step_timeout!r}",
        )
    if isinstance(workflows, str | bytes) or not isinstance(workflows, Iterable):
        raise errors.InvalidArgument(
            "workflows", f"workflows must be an iterable of workflows, got {workflows!r}"
        )
    if not isinstance(workflows, Collection):
        return  # a one-shot iterable is checked as it is compiled
    strays = [w for w in workflows if not isinstance(w, Workflow | WorkflowDefinition)]
    if strays:
        raise errors.InvalidArgument(
            "workflows",
            f"workflows must be Workflow or WorkflowDefinition objects, got {strays!r}",
        )
