"""Cron expression parsing shared by the compiler and the scheduler (cronsim + zoneinfo)."""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from cronsim import CronSim, CronSimError

__all__ = ["ALIASES", "expand", "expression_problem", "timezone_problem"]

ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def expand(expression: str) -> str:
    """Replace an ``@alias`` by its five-field form; other expressions are returned as is."""
    return ALIASES.get(expression.strip().lower(), expression)


def expression_problem(expression: object) -> str | None:
    """Return why ``expression`` is not a usable cron expression, or ``None``."""
    if not isinstance(expression, str) or not expression.strip():
        return "must be a non-empty string"
    if expression.strip().lower() == "@reboot":
        return "@reboot has no schedule window; use a manual trigger started at boot instead"
    if len(expand(expression).split()) != 5:
        return "must have five fields (minute hour day month weekday) or be an @alias"
    try:
        CronSim(expand(expression), datetime(2000, 1, 1))  # noqa: DTZ001 - syntax check only
    except CronSimError as exc:
        return str(exc)
    return None


def timezone_problem(timezone: object) -> str | None:
    """Return why ``timezone`` is not a known IANA zone, or ``None``."""
    if not isinstance(timezone, str) or not timezone:
        return "must be a non-empty IANA zone name such as 'Europe/Berlin'"
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "is not a known IANA time zone"
    return None
