"""The time source used by the runtime and by dynamic payload defaults.

Production code reads the system clock. Tests swap in a controllable clock (see
``squidmesh_sdk.testing``) with :func:`use_clock`, so waits, retries and ``today()`` defaults
follow the test's notion of time.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from squidmesh_sdk.scoped import Scoped

__all__ = ["Clock", "SystemClock", "current_clock", "use_clock"]


@runtime_checkable
class Clock(Protocol):
    """Anything that can tell the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return ``datetime.now(UTC)``."""
        return datetime.now(UTC)


_SYSTEM_CLOCK = SystemClock()
_current: ContextVar[Clock] = ContextVar("squidmesh_clock", default=_SYSTEM_CLOCK)


def current_clock() -> Clock:
    """Return the clock in effect for the current context."""
    return _current.get()


def use_clock(clock: Clock) -> Scoped[Clock]:
    """Make ``clock`` the current clock inside the ``with`` block (context-local)."""
    return Scoped(_current, clock)
