"""Every exception squidmesh_sdk raises, under one root.

```
SquidmeshError                                                   squidmesh_error
├── DefinitionError          a workflow declaration is invalid      invalid_definition
├── InvalidArgument          a public call got an argument it cannot use   invalid_argument
├── InvalidPayload           a trigger payload is not a mapping, breaks       invalid_payload
│                            its contract or is not strict JSON
├── InvalidTrigger           a trigger name the workflow does not declare     invalid_trigger
├── InvalidWorkflow          a workflow the client was not given             invalid_workflow
│   └── DefinitionUnavailable  it has the workflow, not the run's version  definition_unavailable
├── InvalidRunId             a run id that is not a UUID                       invalid_run_id
├── RunNotFound              no run has that id                                 run_not_found
├── InvalidTransition        the state machine forbids this status change  invalid_transition
├── UnsafeReplay             replay would repeat irreversible steps             unsafe_replay
├── InvalidStep              the run is not at a step that accepts this action   invalid_step
├── InvalidResume            actor, comment or metadata of a manual action     invalid_resume
│                            are malformed or not strict JSON
├── InvalidSchedule          a cron activation's schedule identity           invalid_schedule
│                            is malformed; the instance's code says how:
│                            invalid_schedule_signal, invalid_schedule_signal_id,
│                            invalid_schedule_window, missing_schedule_idempotency_key
│   └── MissingScheduleIdempotencyKey  an idempotent trigger activated with no identity
│                                      missing_schedule_idempotency_key
├── StaleRecord              a step run or attempt is no longer running          stale_record
├── DispatchFailed           the executor refused work; nothing committed     dispatch_failed
├── InvalidExecutorPayload   perform() got something no executor made  invalid_executor_payload
├── ExecutorNotReady         the executor's engine is not set up           executor_not_ready
├── SchemaNotReady           the database is not migrated to this version    schema_not_ready
│   └── SchemaTooNew         a newer release migrated the database further     schema_too_new
├── StepTimeout              an async step ran past its timeout (retried)        step_timeout
└── StepSignal               raised *by step code* to steer the runtime           step_signal
    ├── NonRetryableError    fail the attempt now; skip the retry policy        non_retryable
    │   ├── StepInputError   the step's inputs are missing or invalid      step_input_invalid
    │   ├── StepOutputError  the step's output cannot be stored           step_output_invalid
    │   └── OutcomeNotStored the database refused to record the outcome  outcome_not_stored
    └── RetryAfter           retryable failure with an explicit delay             retry_after
```

Catch ``SquidmeshError`` to handle anything the library raises on purpose, and branch on its
``code`` (a stable snake_case string; the class attribute, which an instance may refine, as
``InvalidSchedule`` does), never on the message. ``NonRetryableError`` and ``RetryAfter`` take
a ``code`` of the step's own (``"card_declined"``); it is stored with the attempt's error.

Every public call of :class:`~squidmesh_sdk.Client` raises only ``SquidmeshError`` subclasses
for bad input. Errors raised by a step body are not wrapped: the runtime records them on the
attempt (see :mod:`squidmesh_sdk.error_records` for the stored shape) and applies the retry
policy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = [
    "DefinitionError",
    "DefinitionUnavailable",
    "DispatchFailed",
    "ExecutorNotReady",
    "InvalidArgument",
    "InvalidExecutorPayload",
    "InvalidPayload",
    "InvalidResume",
    "InvalidRunId",
    "InvalidSchedule",
    "InvalidStep",
    "InvalidTransition",
    "InvalidTrigger",
    "InvalidWorkflow",
    "Issue",
    "MissingScheduleIdempotencyKey",
    "NonRetryableError",
    "OutcomeNotStored",
    "RetryAfter",
    "RunNotFound",
    "SchemaNotReady",
    "SchemaTooNew",
    "SquidmeshError",
    "StaleRecord",
    "StepInputError",
    "StepOutputError",
    "StepSignal",
    "StepTimeout",
    "UnsafeReplay",
]


class SquidmeshError(Exception):
    """Root of every exception raised on purpose by squidmesh_sdk.

    Attributes:
        code: A stable snake_case identifier of the error (see the module's tree).
    """

    code: str = "squidmesh_error"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a workflow declaration.

    Attributes:
        code: A stable machine-readable identifier such as ``"dependency_cycle"``.
        step: The step the problem belongs to, or ``None`` for workflow-level problems.
        message: A sentence that names the problem and how to fix it.
    """

    code: str
    step: str | None
    message: str

    def __str__(self) -> str:
        return self.message


class DefinitionError(SquidmeshError, ValueError):
    """A workflow declaration is invalid.

    The compiler collects every problem before raising, so one error lists them all.

    Attributes:
        workflow: The name of the workflow that failed to compile.
        issues: Every problem found, in a stable order.
    """

    code = "invalid_definition"

    def __init__(self, workflow: str, issues: Iterable[Issue]) -> None:
        self.workflow = workflow
        self.issues: tuple[Issue, ...] = tuple(issues)
        lines = "\n".join(f"- [{issue.code}] {issue.message}" for issue in self.issues)
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"workflow {workflow!r} has {count} {noun}:\n{lines}")

    @property
    def codes(self) -> tuple[str, ...]:
        """The issue codes, in order; handy in tests and logs."""
        return tuple(issue.code for issue in self.issues)


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
    """A trigger payload was not a mapping, or broke the trigger's payload contract.

    All problems are reported together; nothing is persisted when this is raised.

    Attributes:
        trigger: The trigger whose contract was applied.
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
        super().__init__(f"invalid payload for trigger {trigger!r}: " + "; ".join(parts))

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


class InvalidTrigger(SquidmeshError, LookupError):
    """The workflow declares no trigger of this name.

    Attributes:
        workflow: The workflow name.
        trigger: The trigger name that was asked for.
        known: The triggers the workflow does declare.
    """

    code = "invalid_trigger"

    def __init__(self, workflow: str, trigger: str, known: Sequence[str]) -> None:
        self.workflow = workflow
        self.trigger = trigger
        self.known = tuple(known)
        super().__init__(
            f"workflow {workflow!r} has no trigger {trigger!r}; declared: {', '.join(self.known)}"
        )


class InvalidWorkflow(SquidmeshError, LookupError):
    """The workflow is not one this client was given.

    Runs name their workflow; a worker can only execute workflows it was constructed with.

    Attributes:
        workflow: The workflow name that was asked for.
        known: The workflow names the client does know.
    """

    code = "invalid_workflow"

    def __init__(self, workflow: str, known: Sequence[str]) -> None:
        self.workflow = workflow
        self.known = tuple(known)
        listed = ", ".join(self.known) or "none"
        super().__init__(
            f"workflow {workflow!r} is not registered with this client; registered: {listed}"
        )


class DefinitionUnavailable(InvalidWorkflow):
    """The client holds the run's workflow, but not the version the run is pinned to.

    A run keeps the definition version it started on. A process that holds other versions
    only leaves its work alone: the database queue does not claim it, other executors have it
    delivered again later. Deploy that version beside the new one (``Client(workflows=[v1,
    v2])``), cancel the run, or replay it on the current version.

    Attributes:
        workflow: The workflow name.
        version: The version the run is pinned to.
        held: The versions of the workflow this client holds.
        run_id: The run, when known.
        step: The step the run needs that the held version lacks, when the version is held
            but was kept across a change that removed the step.
    """

    code = "definition_unavailable"

    def __init__(
        self,
        workflow: str,
        version: str,
        held: Sequence[str],
        *,
        run_id: str | None = None,
        step: str | None = None,
    ) -> None:
        self.workflow = workflow
        self.known = (workflow,)
        self.version = version
        self.held = tuple(held)
        self.run_id = run_id
        self.step = step
        subject = f"run {run_id}" if run_id else "the run"
        if step is not None:
            message = (
                f"{subject} needs step {step!r}, which version {version!r} of workflow "
                f"{workflow!r} held by this client no longer declares (the version was kept "
                "across a change that removed it): deploy the version the run started on, "
                "cancel the run, or replay it on the current version"
            )
        else:
            message = (
                f"{subject} is pinned to version {version!r} of workflow {workflow!r}, which "
                f"this client does not hold (it holds {', '.join(map(repr, self.held))}): "
                "deploy that version beside the new one, cancel the run, or replay it on the "
                "current version"
            )
        SquidmeshError.__init__(self, message)


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


class InvalidSchedule(SquidmeshError, ValueError):
    """A cron activation's schedule identity is malformed or missing; no run was started.

    Attributes:
        workflow: The workflow.
        trigger: The cron trigger.
        problem: What is wrong (a bad ``signal_id``, a bad ``intended_window``, or an
            idempotent trigger activated without any identity).
        code: ``invalid_schedule_signal`` (the signal payload is not a mapping or not strict
            JSON), ``invalid_schedule_signal_id``, ``invalid_schedule_window`` or
            ``missing_schedule_idempotency_key``.
    """

    code = "invalid_schedule"

    def __init__(
        self, workflow: str, trigger: str, problem: str, *, code: str | None = None
    ) -> None:
        self.workflow = workflow
        self.trigger = trigger
        self.problem = problem
        if code is not None:
            self.code = code
        super().__init__(f"cron trigger {trigger!r} of workflow {workflow!r}: {problem}")


class MissingScheduleIdempotencyKey(InvalidSchedule):
    """An idempotent cron trigger was activated without a schedule identity; no run started.

    A trigger declared with ``idempotency`` starts one run per identity: the activation needs a
    ``signal_id``, or an ``intended_window`` with both bounds to derive one from.

    Attributes:
        code: ``"missing_schedule_idempotency_key"``.
        idempotency: The trigger's idempotency policy.
        missing: What the activation lacks, such as ``("signal_id", "intended_window.end_at")``.
    """

    code = "missing_schedule_idempotency_key"

    def __init__(
        self, workflow: str, trigger: str, idempotency: str, missing: Sequence[str]
    ) -> None:
        self.idempotency = idempotency
        self.missing = tuple(missing)
        super().__init__(
            workflow,
            trigger,
            f"idempotency {idempotency!r} needs a signal_id or an intended_window with both "
            f"start_at and end_at; missing: {', '.join(self.missing)}",
        )


class StaleRecord(SquidmeshError):
    """A step run or attempt is no longer ``running``, so this update lost a race.

    Attributes:
        record: ``"step_run"`` or ``"attempt"``.
        record_id: Its id.
        status: The status it has now (``None`` when the row is gone).
    """

    code = "stale_record"

    def __init__(self, record: str, record_id: str, status: str | None) -> None:
        self.record = record
        self.record_id = record_id
        self.status = status
        now = f"is {status!r}" if status is not None else "does not exist"
        super().__init__(f"{record} {record_id} {now}; only a running one can be finished")


class DispatchFailed(SquidmeshError):
    """The executor could not take the work; the state change that implied it did not commit.

    The original exception is chained as ``__cause__``.

    Attributes:
        reason: A one-line description of what the executor reported.
    """

    code = "dispatch_failed"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"dispatch failed: {reason}")


class InvalidExecutorPayload(SquidmeshError, ValueError):
    """``perform()`` was given a payload that no executor produced.

    Attributes:
        payload: The value given.
        problem: What is wrong with it.
    """

    code = "invalid_executor_payload"

    def __init__(self, payload: object, problem: str) -> None:
        self.payload = payload
        self.problem = problem
        super().__init__(f"invalid executor payload ({problem}): {payload!r}")


class ExecutorNotReady(SquidmeshError):
    """The executor's engine is not set up for this client (wrong database, missing schema).

    Raised when the client is built, or by the first dispatch, with what to fix.
    """

    code = "executor_not_ready"


class SchemaNotReady(SquidmeshError):
    """The database schema is missing or older than this library needs.

    Attributes:
        current: The migration version the database is at (0 when never migrated).
        required: The version this library needs.
    """

    code = "schema_not_ready"

    def __init__(self, current: int, required: int) -> None:
        self.current = current
        self.required = required
        super().__init__(
            f"the squidmesh schema is at version {current}, this library needs {required}; "
            "run `squidmesh migrate` or call Client.migrate()"
        )


class SchemaTooNew(SchemaNotReady):
    """A newer release of squidmesh_sdk migrated the database past what this library knows.

    Neither ``migrate`` nor the client or a worker runs against it: upgrade squidmesh_sdk
    (schemas are never migrated down).

    Attributes:
        code: ``"schema_too_new"``.
        current: The migration version the database is at.
        required: The newest version this library knows.
    """

    code = "schema_too_new"

    def __init__(self, current: int, required: int) -> None:
        self.current = current
        self.required = required
        SquidmeshError.__init__(
            self,
            f"the squidmesh schema is at version {current}, newer than this library's "
            f"{required}; upgrade squidmesh_sdk",
        )


class StepTimeout(SquidmeshError, TimeoutError):
    """An async step ran longer than its ``timeout`` and was cancelled.

    It is an ordinary, retryable failure: the step's retry policy decides what happens next.

    Attributes:
        step: The step name.
        timeout: The limit, in seconds.
    """

    code = "step_timeout"

    def __init__(self, step: str, timeout: float) -> None:
        self.step = step
        self.timeout = timeout
        super().__init__(f"step {step!r} ran longer than its timeout of {timeout:g}s")


class StepSignal(SquidmeshError):
    """Base for exceptions that steer a step's retries.

    Step code raises them on purpose; the runtime raises :class:`StepInputError` itself when a
    step's inputs cannot be bound.
    """

    code = "step_signal"


class NonRetryableError(StepSignal):
    """Fail the current attempt and skip the step's retry policy.

    The run then takes the step's error route if it has one, or fails.

    Args:
        message: What went wrong.
        code: A machine-readable code of the step's own (``"card_declined"``), stored with the
            error so callers never match on the message; ``"non_retryable"`` by default.
        details: JSON values stored with the error (``{"decline_reason": "..."}``).
    """

    code = "non_retryable"

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(message)


class RetryAfter(StepSignal):
    """A retryable failure that asks for the next attempt after ``delay``.

    The delay replaces the backoff of the step's retry policy for this attempt only; the
    policy's ``max_attempts`` still applies.

    Attributes:
        delay: Seconds to wait before the next attempt (``>= 0``).
        code: The step's own code for the failure (``"rate_limited"``); ``"retry_after"`` by
            default.
    """

    code = "retry_after"

    def __init__(
        self, delay: float | timedelta, message: str | None = None, *, code: str | None = None
    ) -> None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"RetryAfter delay must be a finite number >= 0, got {delay!r}")
        self.delay = seconds
        if code is not None:
            self.code = code
        super().__init__(message or f"retry requested after {seconds:g}s")


class StepInputError(NonRetryableError):
    """A step's inputs could not be bound: required ones are missing or fail validation.

    Retrying would not help, so the attempt fails without retry.

    Attributes:
        step: The step name.
        missing: Required parameters with no value in payload or context.
        invalid: Parameter name to the validation message.
    """

    code = "step_input_invalid"

    def __init__(
        self, step: str, *, missing: Sequence[str] = (), invalid: Mapping[str, str] | None = None
    ) -> None:
        self.step = step
        self.missing = tuple(missing)
        self.invalid = dict(invalid or {})
        parts = []
        if self.missing:
            parts.append("missing inputs: " + ", ".join(self.missing))
        if self.invalid:
            parts.append(
                "invalid inputs: " + "; ".join(f"{k} ({v})" for k, v in self.invalid.items())
            )
        super().__init__(f"step {step!r} cannot start: " + "; ".join(parts))
        self.details = {"missing_inputs": list(self.missing), "invalid_inputs": self.invalid}


class StepOutputError(NonRetryableError):
    """A step returned something the runtime cannot store.

    Steps return a mapping, a pydantic model or ``None``, with strict JSON values (see
    :mod:`squidmesh_sdk.strict_json`: no NaN or infinity, no NUL character or lone surrogate,
    bytes only as UTF-8, nested at most 64 deep). Retrying would return the same thing, so the
    attempt fails without retry.

    Attributes:
        step: The step name.
        path: The JSON path of the offending value (``$.items[2].price``), when there is one.
    """

    code = "step_output_invalid"

    def __init__(self, step: str, problem: str, *, path: str | None = None) -> None:
        self.step = step
        self.path = path
        where = f" at {path}" if path else ""
        super().__init__(f"step {step!r} {problem}{where}")
        self.details = {"path": path} if path else {}


class OutcomeNotStored(NonRetryableError):
    """The database refused to record a step's outcome (not a lost connection).

    Raised by the runtime, never by step code: the step's result was rolled back and the step
    fails with this error, recorded in a fresh transaction, instead of being run again. The
    database's error is chained as ``__cause__``.

    Attributes:
        step: The step name.
    """

    code = "outcome_not_stored"

    def __init__(self, step: str, problem: str) -> None:
        self.step = step
        super().__init__(f"step {step!r}: the database refused to record its outcome ({problem})")
