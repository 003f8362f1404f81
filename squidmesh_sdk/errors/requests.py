"""Calls refused for what they ask.

Bad arguments and payloads, unknown runs, actions the run's state does not allow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from squidmesh_sdk.errors.base import SquidmeshError

__all__ = [
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidPayload",
    "InvalidResume",
    "InvalidRunId",
    "InvalidStep",
    "InvalidTransition",
    "RunNotFound",
    "UnsafeReplay",
]


class InvalidArgument(SquidmeshError, ValueError):
    """A public call was given an argument it cannot use (``list_runs(status="bogus")``).

    Attributes:
        argument: The parameter's name.
        problem: What is wrong with the value.
    """

    code = "invalid_argument"

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(problem)


class InvalidPayload(SquidmeshError, ValueError):
    """A trigger (or signal) payload was not a mapping, or broke its payload contract.

    All problems are reported together; nothing is persisted when this is raised.

    Attributes:
        trigger: The trigger (or signal) whose contract was applied.
        missing_fields: Required fields that were absent, sorted.
        unknown_fields: Keys the contract does not declare, sorted.
        invalid_fields: Field name to a description of why its value was rejected.
    """

    code = "invalid_payload"

    def __init__(
        self,
        trigger: str,
        *,
        missing_fields: Sequence[str] = (),
        unknown_fields: Sequence[str] = (),
        invalid_fields: Mapping[str, str] | None = None,
        reason: str | None = None,
        subject: str = "trigger",
    ) -> None:
        self.trigger = trigger
        self.missing_fields = tuple(sorted(missing_fields))
        self.unknown_fields = tuple(sorted(unknown_fields))
        self.invalid_fields = dict(sorted((invalid_fields or {}).items()))
        parts: list[str] = []
        if reason:
            parts.append(reason)
        if self.missing_fields:
            parts.append("missing fields: " + ", ".join(self.missing_fields))
        if self.unknown_fields:
            parts.append("unknown fields: " + ", ".join(self.unknown_fields))
        if self.invalid_fields:
            parts.append(
                "invalid fields: "
                + "; ".join(f"{name} ({why})" for name, why in self.invalid_fields.items())
            )
        super().__init__(f"invalid payload for {subject} {trigger!r}: " + "; ".join(parts))

    def to_dict(self) -> dict[str, Any]:
        """Return the problems as a JSON-safe mapping with only the non-empty keys."""
        details: dict[str, Any] = {}
        if self.missing_fields:
            details["missing_fields"] = list(self.missing_fields)
        if self.unknown_fields:
            details["unknown_fields"] = list(self.unknown_fields)
        if self.invalid_fields:
            details["invalid_fields"] = dict(self.invalid_fields)
        return details


class InvalidRunId(SquidmeshError, ValueError):
    """A run id that is not a UUID.

    Attributes:
        run_id: The value given.
    """

    code = "invalid_run_id"

    def __init__(self, run_id: object) -> None:
        self.run_id = run_id
        super().__init__(f"run id {run_id!r} is not a UUID")


class RunNotFound(SquidmeshError, LookupError):
    """No run has this id.

    Attributes:
        run_id: The id that was looked up.
    """

    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} does not exist")


class InvalidTransition(SquidmeshError):
    """The run state machine does not allow this status change.

    Attributes:
        run_id: The run, when known.
        from_status: The run's current status.
        to_status: The status that was asked for.
    """

    code = "invalid_transition"

    def __init__(self, from_status: str, to_status: str, *, run_id: str | None = None) -> None:
        self.run_id = run_id
        self.from_status = from_status
        self.to_status = to_status
        where = f"run {run_id}: " if run_id else ""
        super().__init__(f"{where}{_transition_refusal(from_status, to_status)}")


def _transition_refusal(from_status: str, to_status: str) -> str:
    """Why the status change is refused, in an operator's words rather than the state machine's."""
    if to_status == "cancelling" and from_status == "cancelling":
        return "the run is already being cancelled; it stops when its running step ends"
    if to_status == "cancelling" and from_status in ("completed", "failed", "cancelled"):
        return f"the run is already {from_status}; only an unfinished run can be cancelled"
    if to_status == "running" and from_status != "paused":
        return (
            f"the run is {from_status}, not paused: only a run paused at an approval or pause "
            "step can be approved, rejected or unblocked"
        )
    return f"the run is {from_status} and cannot become {to_status}"


class UnsafeReplay(SquidmeshError):
    """Replaying this run would repeat steps whose effects cannot be undone.

    Attributes:
        run_id: The run that was to be replayed.
        steps: The completed steps that block it, each with its recovery policy.
    """

    code = "unsafe_replay"

    def __init__(self, run_id: str, steps: Sequence[Mapping[str, Any]]) -> None:
        self.run_id = run_id
        self.steps = tuple(dict(step) for step in steps)
        names = ", ".join(str(step.get("step")) for step in self.steps)
        super().__init__(
            f"replay of run {run_id} requires explicit approval after irreversible or "
            f"non-compensatable steps ({names}); pass allow_irreversible=True"
        )


class InvalidSignal(SquidmeshError):
    """A signal the run cannot take; nothing was stored.

    ``code`` says why: ``signal_run_finished`` (the run is completed, failed, cancelled or
    cancelling), ``unknown_signal`` (no step of the run's pinned definition waits for a
    signal of that name) or ``signal_key_conflict`` (the idempotency key already delivered
    another signal: another name or payload).

    Attributes:
        run_id: The run.
        name: The signal's name.
        reason: Why it is refused.
    """

    code = "invalid_signal"

    def __init__(self, run_id: str, name: str, reason: str, *, code: str) -> None:
        self.run_id = run_id
        self.name = name
        self.reason = reason
        self.code = code
        super().__init__(f"run {run_id} cannot take signal {name!r}: {reason}")


class UnsafeRetry(UnsafeReplay):
    """Retrying this failed run would run irreversible or non-compensatable steps again.

    A kind of :class:`UnsafeReplay`: code that handles one handles the other.

    Attributes:
        run_id: The run that was to be retried.
        steps: The completed steps that would run again, each with its recovery policy.
    """

    code = "unsafe_retry"

    def __init__(self, run_id: str, steps: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(run_id, steps)
        names = ", ".join(str(step.get("step")) for step in self.steps)
        self.args = (
            f"retry of run {run_id} would run irreversible or non-compensatable steps again "
            f"({names}); pass allow_irreversible=True",
        )


class RetryRefused(SquidmeshError):
    """A failed run that cannot be resumed from its failed step; nothing changed.

    ``code`` says why: ``compensation_started`` (its rollback has begun or finished: replay
    the run instead).

    Attributes:
        run_id: The run.
        reason: Why it is refused.
    """

    code = "retry_refused"

    def __init__(self, run_id: str, reason: str, *, code: str) -> None:
        self.run_id = run_id
        self.reason = reason
        self.code = code
        super().__init__(f"run {run_id} cannot be retried: {reason}")


class InvalidStep(SquidmeshError):
    """The run's current step does not accept this action.

    For example ``approve_run`` on a run paused at a ``pause`` step (use ``unblock_run``), or a
    resume whose persisted target the deployed workflow no longer declares.

    Attributes:
        run_id: The run.
        step: Its current step.
        reason: Why the action is refused.
    """

    code = "invalid_step"

    def __init__(self, run_id: str, step: str | None, reason: str) -> None:
        self.run_id = run_id
        self.step = step
        self.reason = reason
        super().__init__(f"run {run_id} at step {step!r}: {reason}")


class InvalidResume(SquidmeshError, ValueError):
    """The actor, comment or metadata given with a manual action are malformed.

    Attributes:
        problems: Field name to what is wrong with it (``{"actor": "required"}``).
    """

    code = "invalid_resume"

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        listed = "; ".join(f"{field}: {why}" for field, why in self.problems.items())
        super().__init__(f"invalid manual action: {listed}")


class IdempotencyConflict(SquidmeshError):
    """An idempotency key already started a run of this workflow, from another request.

    ``start_run(..., idempotency_key=K)`` returns the run ``K`` started when the request is
    the same one (same trigger, same payload as given, and the run's priority if one is
    given); a different request under the same key is refused rather than answered with a
    run it did not ask for. Nothing is written.

    Attributes:
        workflow: The workflow.
        idempotency_key: The key.
        run_id: The run the key already started.
        trigger: The trigger that run was started through.
    """

    code = "idempotency_conflict"

    def __init__(self, workflow: str, idempotency_key: str, run_id: str, *, trigger: str) -> None:
        self.workflow = workflow
        self.idempotency_key = idempotency_key
        self.run_id = run_id
        self.trigger = trigger
        super().__init__(
            f"idempotency key {idempotency_key!r} already started run {run_id} of {workflow!r} "
            f"(via {trigger!r}) with another trigger, payload or priority; "
            "use a new key for a new request"
        )
