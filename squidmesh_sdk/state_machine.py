"""The run state machine: statuses and the transitions between them.

```
pending ──> running ──> completed
   │          │ ▲ ──> paused ──> running | completed | failed | cancelled
   │          │ └── retrying ──> failed | cancelling
   │          └──> failed | cancelling ──> cancelled | failed
   └──> failed | cancelled
failed ──> running   (only retry_run: an operator resumes it from its failed step)
```

There is no ``pending -> completed`` (a run completes by running its steps) and no
``running -> cancelled``: a running step is allowed to finish, so cancellation of a running run
goes through ``cancelling``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from squidmesh_sdk import errors

__all__ = [
    "ALLOWED",
    "STATES",
    "TERMINAL",
    "RunStatus",
    "can_transition",
    "check_transition",
    "schedule_next_step",
]

RunStatus = Literal[
    "pending", "running", "retrying", "paused", "failed", "completed", "cancelling", "cancelled"
]
"""A run's status (the store's records use it; defined here, with its transitions)."""

STATES: tuple[RunStatus, ...] = (
    "pending",
    "running",
    "retrying",
    "paused",
    "failed",
    "completed",
    "cancelling",
    "cancelled",
)
"""Every run status, in lifecycle order."""

ALLOWED: Mapping[RunStatus, frozenset[RunStatus]] = {
    "pending": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"retrying", "paused", "failed", "completed", "cancelling"}),
    "retrying": frozenset({"running", "failed", "cancelling"}),
    "paused": frozenset({"running", "failed", "completed", "cancelled"}),
    "cancelling": frozenset({"cancelled", "failed"}),
    "failed": frozenset({"running"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}
"""Status to the statuses it may move to."""

TERMINAL: frozenset[RunStatus] = frozenset({"failed", "completed", "cancelled"})
"""Statuses a run never leaves."""


def can_transition(from_status: str, to_status: str) -> bool:
    """Whether a run may move from ``from_status`` to ``to_status``."""
    return to_status in ALLOWED.get(from_status, frozenset())  # type: ignore[call-overload]


def check_transition(from_status: str, to_status: str, *, run_id: str | None = None) -> None:
    """Raise unless the move is allowed.

    Raises:
        InvalidTransition: the move is not allowed, or either status is unknown.
    """
    if not can_transition(from_status, to_status):
        raise errors.InvalidTransition(from_status, to_status, run_id=run_id)


def schedule_next_step(status: str) -> bool:
    """Whether a run in ``status`` should have more step work scheduled."""
    return status in ("pending", "running", "retrying")
