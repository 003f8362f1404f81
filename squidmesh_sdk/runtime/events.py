"""What the runtime reports: one record per thing that happened, emitted after commit.

Observers (logging today, OpenTelemetry spans and metrics too) receive these. Nothing is
reported for a transaction that rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from squidmesh_sdk.frozen import fast_init
from squidmesh_sdk.store.records import Run

__all__ = [
    "CompensationDispatched",
    "CompensationFinished",
    "LoggingObserver",
    "Observer",
    "RetryScheduled",
    "RunCreated",
    "RunEvent",
    "RunTransitioned",
    "StepCompleted",
    "StepDispatched",
    "StepFailed",
    "StepSkipped",
    "StepStarted",
]

logger = logging.getLogger("squidmesh_sdk.runtime")


@dataclass(frozen=True, slots=True)
class RunCreated:
    """A run was created (``replayed_from`` is set for a replay)."""

    run: Run
    replayed_from: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class RunTransitioned:
    """A run changed status."""

    run: Run
    from_status: str
    to_status: str


@fast_init
@dataclass(frozen=True, slots=True)
class StepDispatched:
    """Steps of a run were handed to the executor."""

    run: Run
    steps: tuple[str, ...]
    schedule_in: float | None
    metadata: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class CompensationDispatched:
    """A failed run's saga rollback was handed to the executor."""

    run: Run
    metadata: Mapping[str, Any]


@fast_init
@dataclass(frozen=True, slots=True)
class StepStarted:
    """An attempt of a step started."""

    run: Run
    step: str
    attempt: int


@dataclass(frozen=True, slots=True)
class StepSkipped:
    """A delivery was a no-op: the step is not current, already running, or the run finished."""

    run: Run
    step: str
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class StepCompleted:
    """An attempt of a step completed."""

    run: Run
    step: str
    attempt: int
    duration: timedelta


@dataclass(frozen=True, slots=True)
class StepFailed:
    """An attempt of a step failed."""

    run: Run
    step: str
    attempt: int
    duration: timedelta
    error: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A failed step will be attempted again after ``delay`` seconds."""

    run: Run
    step: str
    attempt: int
    delay: float


@dataclass(frozen=True, slots=True)
class CompensationFinished:
    """A compensation callback of a failed run finished; ``error`` is set when it failed."""

    run: Run
    step: str
    attempt: int
    duration: timedelta
    error: Mapping[str, Any] | None = None


RunEvent = (
    RunCreated
    | RunTransitioned
    | StepDispatched
    | CompensationDispatched
    | CompensationFinished
    | StepStarted
    | StepSkipped
    | StepCompleted
    | StepFailed
    | RetryScheduled
)
"""Any runtime event."""


class Observer(Protocol):
    """Receives runtime events after the transaction that produced them committed."""

    def emit(self, event: RunEvent) -> None:
        """Handle one event. Exceptions are logged and otherwise ignored."""
        ...


class LoggingObserver:
    """Logs what happens to runs on the ``squidmesh_sdk.runtime`` logger, with structured fields.

    INFO: a step attempt started or completed, a run finished (completed, failed, cancelled), a
    compensation callback completed. WARNING: an attempt failed, a retry was scheduled, a
    compensation callback failed. DEBUG: everything else. Every record carries ``event`` (a
    stable name such as ``step_completed``), ``run_id``, ``workflow`` and, where they apply,
    ``step``, ``attempt``, ``duration_ms``, ``delay``, ``error_type`` and ``error``.
    """

    def emit(self, event: RunEvent) -> None:
        """Log ``event`` (its fields are only gathered when its level is enabled)."""
        level = _level_of(event)
        if not logger.isEnabledFor(level):
            return
        extra: dict[str, Any] = {
            "run_id": event.run.id,
            "workflow": event.run.workflow,
            "trigger": event.run.trigger,
            "status": event.run.status,
        }
        step = getattr(event, "step", None)
        if step is not None:
            extra["step"] = step
            extra["attempt"] = getattr(event, "attempt", None)
        duration = getattr(event, "duration", None)
        if isinstance(duration, timedelta):
            extra["duration_ms"] = round(duration.total_seconds() * 1000, 1)
        message, name = _describe(event, extra)
        logger.log(level, message, extra={"event": name, **extra})


_FINISHED = {"completed": "run completed", "failed": "run failed", "cancelled": "run cancelled"}


def _level_of(event: RunEvent) -> int:
    """The level ``event`` is logged at."""
    if isinstance(event, StepFailed | RetryScheduled):
        return logging.WARNING
    if isinstance(event, CompensationFinished):
        return logging.WARNING if event.error is not None else logging.INFO
    if isinstance(event, RunTransitioned):
        return logging.INFO if event.to_status in _FINISHED else logging.DEBUG
    if isinstance(event, StepStarted | StepCompleted | CompensationDispatched):
        return logging.INFO
    return logging.DEBUG


def _describe(event: RunEvent, extra: dict[str, Any]) -> tuple[str, str]:
    """The constant message and event name of ``event`` (adding its own fields)."""
    if isinstance(event, StepStarted):
        return "step started", "step_started"
    if isinstance(event, StepCompleted):
        return "step completed", "step_completed"
    if isinstance(event, StepFailed):
        _error_fields(extra, event.error)
        return "step failed", "step_failed"
    if isinstance(event, RetryScheduled):
        extra["delay"] = event.delay
        return "step will be retried", "retry_scheduled"
    if isinstance(event, CompensationFinished):
        if event.error is not None:
            _error_fields(extra, event.error)
            return "compensation failed", "compensation_failed"
        return "compensation completed", "compensation_completed"
    if isinstance(event, RunTransitioned):
        extra.update(from_status=event.from_status, to_status=event.to_status)
        if event.to_status in _FINISHED:
            return _FINISHED[event.to_status], f"run_{event.to_status}"
        return "run transition", "run_transitioned"
    if isinstance(event, StepSkipped):
        extra["reason"] = event.reason
        return "step delivery skipped", "step_skipped"
    if isinstance(event, CompensationDispatched):
        return "compensation started", "compensation_dispatched"
    if isinstance(event, StepDispatched):
        extra["steps"] = list(event.steps)
        return "steps dispatched", "steps_dispatched"
    return "run created", "run_created"


def _error_fields(extra: dict[str, Any], error: Mapping[str, Any]) -> None:
    extra["error"] = dict(error)
    error_type = error.get("type") or error.get("error_type")
    if isinstance(error_type, str):
        extra["error_type"] = error_type
