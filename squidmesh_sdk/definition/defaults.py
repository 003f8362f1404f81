"""Dynamic payload defaults evaluated when a run is created.

Use them as pydantic ``default_factory`` values; they read the current
:mod:`squidmesh_sdk.clock`, so a test's fake clock controls them too::

    class Digest(BaseModel):
        digest_date: date = Field(default_factory=today)
"""

from __future__ import annotations

from datetime import date, datetime

from squidmesh_sdk import clock

__all__ = ["now", "today"]


def today() -> date:
    """Return the current UTC date (stored in payloads as ``"YYYY-MM-DD"``)."""
    return clock.current_clock().now().date()


def now() -> datetime:
    """Return the current time as an aware UTC datetime (stored as ISO 8601)."""
    return clock.current_clock().now()
