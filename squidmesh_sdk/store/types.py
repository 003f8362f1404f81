"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

__all__ = ["JSONColumn", "UTCDateTime", "naive_time"]


def naive_time(value: datetime) -> ValueError:
    """The error for a naive datetime given where an aware one is stored."""
    return ValueError(f"naive datetime {value!r}: squidmesh stores aware UTC datetimes")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out.

    PostgreSQL stores ``timestamptz``. SQLite has no time zone type, so values are stored as
    naive UTC text (which also sorts chronologically) and made aware again when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC; reject naive datetimes, whose meaning is ambiguous."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise naive_time(value)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def JSONColumn() -> sa.types.TypeEngine[Any]:  # noqa: N802 - reads as a type in Column()
    """JSON on SQLite, JSONB on PostgreSQL; Python ``None`` is SQL ``NULL``, not JSON ``null``."""
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
