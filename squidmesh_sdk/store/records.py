"""What the stores return: runs, step runs, attempts and audit events, as frozen records.

JSON columns come back as plain dicts; ids as canonical UUID strings; times as aware UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from squidmesh_sdk import error_records, errors
from squidmesh_sdk.frozen import fast_init
from squidmesh_sdk.state_machine import RunStatus
from squidmesh_sdk.store.ids import CANONICAL_ID

__all__ = [
    "SCHEDULE_KEY",
    "Attempt",
    "AttemptStatus",
    "AuditEvent",
    "AuditEventType",
    "ChildRun",
    "Run",
    "RunStatus",
    "Signal",
    "StepRun",
    "StepRunStatus",
    "StepState",
    "StepStateStatus",
    "canonical_run_id",
    "parse_run_id",
]

SCHEDULE_KEY = "schedule"
"""Context key reserved for a cron run's schedule metadata; step outputs cannot replace it."""

StepRunStatus = Literal["pending", "running", "completed", "failed", "skipped", "cancelled"]
AttemptStatus = Literal["running", "completed", "failed", "abandoned"]
StepStateStatus = Literal[
    "waiting", "pending", "running", "completed", "failed", "skipped", "cancelled"
]
AuditEventType = Literal[
    "paused",
    "resumed",
    "approved",
    "rejected",
    "cancelled",
    "replayed",
    "compensation_routed",
    "undo_routed",
    "route_taken",
    "skipped",
    "timed_out",
    "deadline_exceeded",
    "signal_received",
    "signal_consumed",
    "child_started",
    "retried",
    "steps_closed",
    "child_cancelled",
    "child_abandoned",
]


def canonical_run_id(run_id: object) -> str:
    """``run_id`` in canonical text (``"0190e3a4-..."``), as every record holds it.

    A string already canonical is returned as it is (the common case: ids the library wrote
    itself, read back from a job payload), without a ``uuid.UUID`` made for it.

    Raises:
        InvalidRunId: it is not a UUID (or a string holding one).
    """
    if isinstance(run_id, str) and CANONICAL_ID.fullmatch(run_id):
        return run_id
    return str(parse_run_id(run_id))


def parse_run_id(run_id: object) -> uuid.UUID:
    """Return ``run_id`` as a UUID.

    Raises:
        InvalidRunId: it is not a UUID (or a string holding one).
    """
    if isinstance(run_id, uuid.UUID):
        return run_id
    if isinstance(run_id, str):
        try:
            return uuid.UUID(run_id)
        except ValueError:
            pass
    raise errors.InvalidRunId(run_id)


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try of a step.

    Attributes:
        id: Attempt id.
        step_run_id: The step run it belongs to.
        number: 1 for the first try, then 2, 3...
        status: ``running``, ``completed``, ``failed``, or ``abandoned`` when the process
            running it stopped before it finished (its outcome is unknown; it was retried).
        error: The normalised error of a failed attempt.
        inserted_at: When the attempt started.
        updated_at: When it last changed (its end, once finished).
    """

    id: str
    step_run_id: str
    number: int
    status: AttemptStatus
    error: Mapping[str, Any] | None
    inserted_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Attempt:
        """Build from a ``squidmesh_step_attempts`` row (an attempt before the latest)."""
        return cls(
            id=str(row["id"]),
            step_run_id=str(row["step_run_id"]),
            number=row["attempt_number"],
            status=row["status"],
            error=error_records.upgrade(row["error"]),
            inserted_at=row["inserted_at"],
            updated_at=row["updated_at"],
        )

    @classmethod
    def latest_of(cls, row: Mapping[Any, Any]) -> Attempt | None:
        """The latest attempt a ``squidmesh_step_runs`` row holds; ``None`` before the first."""
        attempt_id = row["attempt_id"]
        if attempt_id is None:
            return None
        return cls(
            id=str(attempt_id),
            step_run_id=str(row["id"]),
            number=row["attempt_number"],
            status=row["attempt_status"],
            error=error_records.upgrade(row["attempt_error"]),
            inserted_at=row["attempt_started_at"],
            updated_at=row["attempt_updated_at"],
        )


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class StepRun:
    """The state of one step within one run (one row per run and step).

    Attributes:
        id: Step run id.
        run_id: The run.
        step: Step name.
        status: ``pending`` (scheduled), ``running``, ``completed`` or ``failed``.
        input: The inputs the step was (or will be) called with.
        output: What the step returned, after output-key namespacing.
        last_error: The error of the latest failed attempt.
        recovery: Replay / compensation policy, plus failure routing and compensation results.
        resume: Where a paused step resumes to (pause and approval steps).
        manual: The manual action that resumed it (actor, comment, metadata, time).
        attempts: The attempts, oldest first, when loaded with history.
        inserted_at: When the step was first scheduled or started.
        updated_at: When it last changed.
    """

    id: str
    run_id: str
    step: str
    status: StepRunStatus
    input: Mapping[str, Any]
    output: Mapping[str, Any] | None
    last_error: Mapping[str, Any] | None
    recovery: Mapping[str, Any] | None
    resume: Mapping[str, Any] | None
    manual: Mapping[str, Any] | None
    inserted_at: datetime
    updated_at: datetime
    attempts: tuple[Attempt, ...] | None = None

    @classmethod
    def from_row(
        cls, row: Mapping[Any, Any], attempts: tuple[Attempt, ...] | None = None
    ) -> StepRun:
        """Build from a ``squidmesh_step_runs`` row."""
        return cls(
            id=str(row["id"]),
            run_id=str(row["run_id"]),
            step=row["step"],
            status=row["status"],
            input=row["input"],
            output=row["output"],
            last_error=error_records.upgrade(row["last_error"]),
            recovery=row["recovery"],
            resume=row["resume"],
            manual=row["manual"],
            inserted_at=row["inserted_at"],
            updated_at=row["updated_at"],
            attempts=attempts,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepState:
    """A declared step as the run sees it: its step run if it has one, else ``waiting``.

    Attributes:
        step: Step name.
        status: ``waiting`` (not reached or not scheduled yet), or the step run's status.
        depends_on: The step's dependencies (dependency workflows).
        input: Its input, once scheduled or started.
        output: Its output, once completed.
        last_error: Its latest error.
        recovery: Its recovery policy (from the step run, else the declaration).
        attempts: Its attempts, oldest first.
        inserted_at: When it was first scheduled or started.
        updated_at: When it last changed.
    """

    step: str
    status: StepStateStatus
    depends_on: tuple[str, ...]
    input: Mapping[str, Any] | None
    output: Mapping[str, Any] | None
    last_error: Mapping[str, Any] | None
    recovery: Mapping[str, Any] | None
    attempts: tuple[Attempt, ...]
    inserted_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """An audit event: a pause, a manual decision, a cancellation, a replay, or a labelled route.

    Attributes:
        type: What happened.
        step: The step it happened at.
        actor: Who acted (a name or a mapping), for manual decisions and cancellations.
        comment: Their comment (for a cancellation: its reason).
        metadata: Free-form details (for routes: ``{"target": ...}``).
        at: When.
    """

    type: AuditEventType
    step: str | None
    actor: str | Mapping[str, Any] | None
    comment: str | None
    metadata: Mapping[str, Any] | None
    at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AuditEvent:
        """Build from a ``squidmesh_run_events`` row."""
        return cls(
            type=row["type"],
            step=row["step"],
            actor=row["actor"],
            comment=row["comment"],
            metadata=row["metadata"],
            at=row["at"],
        )


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One execution of a workflow.

    Attributes:
        id: Run id (a UUID string).
        workflow: Workflow name.
        trigger: The trigger that started it.
        status: Where it is in the run state machine.
        payload: The validated trigger payload, defaults resolved.
        context: Everything the steps produced so far, merged (or under their output keys).
        current_step: The one step the run's status is about: the step a transition run runs
            or runs next, the step a retrying run waits to retry, the step a paused run waits
            at, the step whose failure failed the run. ``None`` when no single step is: a
            dependency run in progress, a completed, cancelling or cancelled run.
        last_error: Why it failed or is retrying.
        replayed_from_run_id: The run this one replays, if any.
        definition_fingerprint: Fingerprint of the workflow graph the run was started with.
        definition_version: The workflow version the run is pinned to (``None``: started
            before versions were recorded; it runs on the version a worker holds).
        trace_context: The W3C trace context spans of this run join.
        idempotency_key: The key it was started with (``start_run(..., idempotency_key=)``):
            the same key starts no other run of this workflow. ``None`` for runs started
            without one (a cron run's schedule identity is in :attr:`schedule`).
        inserted_at: When it was created.
        updated_at: When it last changed.
        parent_run_id: The run whose ``child`` step started this one, if any.
        parent_step: The step run key of that ``child`` step.
        operator_retries: How many times an operator resumed the failed run
            (``retry_run``).
        priority: The priority its jobs are queued with (higher first).
        step_runs: Step runs with their attempts, oldest first, when loaded with history.
        events: Audit events, oldest first, when loaded with history.
        steps: Every declared step's state, in graph order, when loaded with history through a
            client that knows the workflow.
        signals: Signals sent to the run, oldest first, when loaded with history.
        children: Runs its ``child`` steps started, oldest first, when loaded with history.
    """

    id: str
    workflow: str
    trigger: str
    status: RunStatus
    payload: Mapping[str, Any]
    context: Mapping[str, Any]
    current_step: str | None
    last_error: Mapping[str, Any] | None
    replayed_from_run_id: str | None
    definition_fingerprint: str
    definition_version: str | None
    trace_context: Mapping[str, Any] | None
    inserted_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    parent_step: str | None = None
    operator_retries: int = 0
    priority: int = 0
    step_runs: tuple[StepRun, ...] | None = None
    events: tuple[AuditEvent, ...] | None = None
    steps: tuple[StepState, ...] | None = None
    signals: tuple[Signal, ...] | None = None
    children: tuple[ChildRun, ...] | None = None

    @property
    def schedule(self) -> Mapping[str, Any] | None:
        """Schedule metadata of a cron-started run (``context["schedule"]``), else ``None``."""
        value = self.context.get(SCHEDULE_KEY)
        # ``None`` first: an ABC's isinstance is a Python call (``abc``'s), and it is asked
        # of every run, which is seldom cron-started.
        return value if value is not None and isinstance(value, Mapping) else None

    @property
    def terminal(self) -> bool:
        """Whether the run is finished: completed, failed or cancelled.

        Nothing changes it any more, except an operator's ``retry_run`` of a failed run.
        """
        return self.status in ("completed", "failed", "cancelled")

    def step_run(self, step: str) -> StepRun | None:
        """The loaded step run of ``step``, if the run was loaded with history and has one."""
        return next((sr for sr in self.step_runs or () if sr.step == step), None)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Run:
        """Build from a ``squidmesh_runs`` row."""
        replayed = row["replayed_from_run_id"]
        parent = row.get("parent_run_id")
        return cls(
            id=str(row["id"]),
            workflow=row["workflow"],
            trigger=row["trigger"],
            status=row["status"],
            payload=row["payload"],
            context=row["context"],
            current_step=row["current_step"],
            last_error=error_records.upgrade(row["last_error"]),
            replayed_from_run_id=str(replayed) if replayed is not None else None,
            definition_fingerprint=row["definition_fingerprint"],
            definition_version=row["definition_version"],
            trace_context=row["trace_context"],
            idempotency_key=row["start_key"],
            parent_run_id=str(parent) if parent is not None else None,
            parent_step=row.get("parent_step"),
            operator_retries=row.get("operator_retries") or 0,
            priority=row.get("priority") or 0,
            inserted_at=row["inserted_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """A signal sent to a run (:meth:`~squidmesh_sdk.Client.signal`).

    Attributes:
        id: Signal id.
        run_id: The run it was sent to.
        name: The signal's name, as a ``signal`` step waits for it.
        payload: Its validated payload (strict JSON), or ``None``.
        idempotency_key: The key it was sent with: the same key again is this signal.
        status: ``pending`` (buffered until a step waits for it) or ``consumed``.
        step: The step run key that consumed it, once consumed.
        inserted_at: When it was received.
        consumed_at: When a step consumed it.
        duplicate: Set on the record :meth:`~squidmesh_sdk.Client.signal` returns when the
            idempotency key had already delivered this signal (nothing new was stored).
    """

    id: str
    run_id: str
    name: str
    payload: Any
    idempotency_key: str | None
    status: Literal["pending", "consumed"]
    step: str | None
    inserted_at: datetime
    consumed_at: datetime | None
    duplicate: bool = False

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Signal:
        """Build from a ``squidmesh_signals`` row."""
        return cls(
            id=str(row["id"]),
            run_id=str(row["run_id"]),
            name=row["name"],
            payload=row["payload"],
            idempotency_key=row["idempotency_key"],
            status=row["status"],
            step=row["step"],
            inserted_at=row["inserted_at"],
            consumed_at=row["consumed_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "id": self.id,
            "run_id": self.run_id,
            "name": self.name,
            "payload": self.payload,
            "idempotency_key": self.idempotency_key,
            "status": self.status,
            "step": self.step,
            "inserted_at": self.inserted_at.isoformat(),
            "consumed_at": self.consumed_at.isoformat() if self.consumed_at else None,
            "duplicate": self.duplicate,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRun:
    """A run a ``child`` step started, as its parent lists it.

    Attributes:
        child_run_id: The child run.
        workflow: Its workflow.
        status: Its status when read.
        parent_step: The parent's step run key that started it.
    """

    child_run_id: str
    workflow: str
    status: RunStatus
    parent_step: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "child_run_id": self.child_run_id,
            "workflow": self.workflow,
            "status": self.status,
            "parent_step": self.parent_step,
        }
