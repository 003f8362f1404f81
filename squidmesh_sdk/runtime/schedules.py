"""Cron schedule windows and the identity of each activation.

A window is the span from one firing time of a cron expression to the next, computed in the
trigger's time zone (so a daily 02:30 job fires once on both DST change days: at 03:00 when
02:30 does not exist, and at the first 02:30 when it happens twice). Its identity, the
``signal_id``, is derived from workflow, trigger and window, so every scheduler that looks at
the same window names it the same way.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cronsim import CronSim

from squidmesh_sdk import cron_expressions, errors, strict_json
from squidmesh_sdk.graph import TriggerNode

__all__ = [
    "CatchUp",
    "Signal",
    "Window",
    "derive_signal_id",
    "due_windows",
    "next_start",
    "parse_signal",
    "schedule_context",
    "window_at_or_before",
]

CatchUp = Literal["latest", "all", "none"]
"""What a scheduler does with windows missed while no worker ran: run the most recent one
(``latest``, the default), run each (``all``, at most :data:`MAX_CATCH_UP`), or skip them."""

_BAD_SIGNAL = "invalid_schedule_signal"
_BAD_WINDOW = "invalid_schedule_window"

MAX_CATCH_UP = 100
"""The most missed windows one scheduler pass starts with ``catch_up="all"``."""


@dataclass(frozen=True, slots=True)
class Window:
    """One scheduled firing: from ``start`` (the firing time) to the next firing, in UTC."""

    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, str]:
        """``{"start_at": iso, "end_at": iso}``."""
        return {"start_at": self.start.isoformat(), "end_at": self.end.isoformat()}


@dataclass(frozen=True, slots=True)
class Signal:
    """The schedule identity an activation carries.

    Attributes:
        signal_id: The scheduler's id, or one derived from a complete window.
        window: The intended window, when both of its bounds were given.
        bounds: The bounds given, normalised to UTC (``start_at`` and / or ``end_at``): a
            window with one bound is kept as metadata, but no id is derived from it.
    """

    signal_id: str | None
    window: Window | None
    bounds: Mapping[str, str] | None = None

    def missing_identity(self) -> tuple[str, ...]:
        """What an idempotent trigger lacks to name this activation (empty when it has an id)."""
        if self.signal_id is not None:
            return ()
        absent = [key for key in ("start_at", "end_at") if key not in (self.bounds or {})]
        if len(absent) == 2:
            return ("signal_id", "intended_window")
        return ("signal_id", *(f"intended_window.{key}" for key in absent))


def _iterate(trigger: TriggerNode, after: datetime) -> CronSim:
    assert trigger.expression is not None  # noqa: S101 - cron triggers have one (compiled)
    zone = ZoneInfo(trigger.timezone or "Etc/UTC")
    return CronSim(cron_expressions.expand(trigger.expression), after.astimezone(zone))


def _next(trigger: TriggerNode, after: datetime) -> datetime:
    return next(_iterate(trigger, after)).astimezone(UTC)


def next_start(trigger: TriggerNode, after: datetime) -> datetime:
    """The first firing time strictly after ``after``, in UTC."""
    return _next(trigger, after)


def window_at_or_before(trigger: TriggerNode, moment: datetime) -> Window | None:
    """The window whose firing time is the latest one at or before ``moment``, if any in a year."""
    # Look back over growing spans, so a minutely schedule costs a couple of iterations and a
    # yearly one still finds its last firing.
    for span in (120, 3600, 86400, 7 * 86400, 31 * 86400, 366 * 86400):
        start = datetime.fromtimestamp(moment.timestamp() - span, UTC)
        latest: datetime | None = None
        for fire in _iterate(trigger, start):
            fire_utc = fire.astimezone(UTC)
            if fire_utc > moment:
                break
            latest = fire_utc
        if latest is not None:
            return Window(latest, _next(trigger, latest))
    return None


def due_windows(
    trigger: TriggerNode, last_start: datetime, now: datetime, catch_up: CatchUp
) -> tuple[list[Window], datetime | None]:
    """Windows to start now, and the firing time to record as the last one handled.

    Due windows are those that began after ``last_start`` and by ``now``. Normally that is one
    (the window that just began); after downtime there are several, and ``catch_up`` decides:
    ``latest`` starts only the most recent, ``all`` starts each (at most :data:`MAX_CATCH_UP`),
    ``none`` starts none of them and waits for the next window.
    """
    if catch_up == "all":
        kept: list[Window] = []
        cursor = last_start
        while len(kept) < MAX_CATCH_UP:
            begin = _next(trigger, cursor)
            if begin > now:
                break
            kept.append(Window(begin, _next(trigger, begin)))
            cursor = begin
        return kept, (kept[-1].start if kept else None)
    # Jump straight to the latest window: a long outage must not mean iterating every window.
    latest = window_at_or_before(trigger, now)
    if latest is None or latest.start <= last_start:
        return [], None
    missed = _next(trigger, last_start) < latest.start
    if catch_up == "none" and missed:
        return [], latest.start
    return [latest], latest.start


def derive_signal_id(workflow: str, trigger: str, window: Window) -> str:
    """``"sha256:"`` + base64url of a hash of workflow, trigger and window (43 characters)."""
    parts = (workflow, trigger, window.start.isoformat(), window.end.isoformat())
    text = "|".join(f"{len(part)}:{part}" for part in parts)
    digest = hashlib.sha256(text.encode()).digest()
    return "sha256:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def parse_signal(workflow: str, trigger: str, payload: Mapping[str, Any] | None) -> Signal:
    """Validate the scheduler's ``signal_id`` and ``intended_window``; derive a missing id.

    A window may lack a bound (a host scheduler that only knows when it fired): it is kept as
    given, and no id is derived from it. Only an idempotent trigger then needs a ``signal_id``.

    Raises:
        InvalidSchedule: a signal id that is not a non-empty string, or a window that is not a
            mapping of ``start_at`` / ``end_at`` ISO-8601 times with offsets, in order.
    """
    if payload is None:
        return Signal(None, None)
    if not isinstance(payload, Mapping):
        raise errors.InvalidSchedule(
            workflow, trigger, "the signal payload must be a mapping", code=_BAD_SIGNAL
        )
    problem = strict_json.find_problem(payload, root="")
    if problem is not None:
        raise errors.InvalidSchedule(
            workflow,
            trigger,
            f"{problem.path} is not strict JSON: {problem.reason}",
            code=_BAD_SIGNAL,
        )
    signal_id = payload.get("signal_id")
    if signal_id is not None and (not isinstance(signal_id, str) or not signal_id.strip()):
        raise errors.InvalidSchedule(
            workflow,
            trigger,
            f"signal_id must be a non-empty string, got {signal_id!r}",
            code="invalid_schedule_signal_id",
        )
    bounds = _parse_bounds(workflow, trigger, payload.get("intended_window"))
    window = None
    if "start_at" in bounds and "end_at" in bounds:
        window = Window(bounds["start_at"], bounds["end_at"])
    if signal_id is None and window is not None:
        signal_id = derive_signal_id(workflow, trigger, window)
    given = {key: moment.isoformat() for key, moment in bounds.items()}
    return Signal(signal_id, window, given or None)


def _parse_bounds(workflow: str, trigger: str, raw: object) -> dict[str, datetime]:
    """The window's bounds that are given, in UTC; a missing bound is no error."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise errors.InvalidSchedule(
            workflow, trigger, "intended_window must be a mapping", code=_BAD_WINDOW
        )
    bounds: dict[str, datetime] = {}
    for key in ("start_at", "end_at"):
        value = raw.get(key)
        if value is None:
            continue
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise errors.InvalidSchedule(
                workflow,
                trigger,
                f"intended_window.{key} must be an ISO-8601 time with an offset, got {value!r}",
                code=_BAD_WINDOW,
            )
        bounds[key] = moment.astimezone(UTC)
    if len(bounds) == 2 and bounds["start_at"] >= bounds["end_at"]:
        raise errors.InvalidSchedule(
            workflow,
            trigger,
            "intended_window.start_at must be before its end_at",
            code=_BAD_WINDOW,
        )
    return bounds


def schedule_context(
    workflow: str, trigger: TriggerNode, signal: Signal, received_at: datetime
) -> dict[str, Any]:
    """The reserved ``context["schedule"]`` of a cron-started run."""
    context: dict[str, Any] = {
        "workflow": workflow,
        "trigger_name": trigger.name,
        "cron_expression": trigger.expression,
        "timezone": trigger.timezone,
        "received_at": received_at.astimezone(UTC).replace(microsecond=0).isoformat(),
    }
    if signal.signal_id is not None:
        context["signal_id"] = signal.signal_id
    if signal.bounds:
        context["intended_window"] = dict(signal.bounds)
    if trigger.idempotency is not None and signal.signal_id is not None:
        context["idempotency"] = trigger.idempotency
        context["idempotency_key"] = signal.signal_id
    return context
