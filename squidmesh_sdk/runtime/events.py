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

from squidmesh_sdk.store.records import Run

__all__ = [
    "CompensationDispatched",
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


@dataclass(frozen=True, slots=True)
class RunTransitioned:
    """A run changed status."""

    run: Run
    from_status: str
    to_status: str


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


RunEvent = (
    RunCreated
    | RunTransitioned
    | StepDispatched
    | CompensationDispatched
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
    """Logs every event at DEBUG (failures and retries at WARNING) with structured fields."""

    def emit(self, event: RunEvent) -> None:
        """Log ``event`` on the ``squidmesh_sdk.runtime`` logger."""
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
        if isinstance(event, StepFailed):
            extra["error"] = dict(event.error)
            logger.warning("workflow step failed", extra=extra)
        elif isinstance(event, RetryScheduled):
            extra["delay"] = event.delay
            logger.warning("workflow step failed; scheduling retry", extra=extra)
        elif isinstance(event, RunTransitioned):
            extra.update(from_status=event.from_status, to_status=event.to_status)
            logger.debug("run transition", extra=extra)
        elif isinstance(event, StepSkipped):
            extra["reason"] = event.reason
            logger.debug("step delivery skipped", extra=extra)
        else:
            logger.debug(type(event).__name__, extra=extra)
