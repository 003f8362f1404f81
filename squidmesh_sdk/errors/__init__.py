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
│   └── UnsafeRetry          retry_run would run them again                      unsafe_retry
├── RetryRefused             a failed run retry_run cannot resume             retry_refused
│                            (code compensation_started)
├── IdempotencyConflict      an idempotency key already started a run     idempotency_conflict
│                            from another trigger, payload or priority
├── RunWaitTimeout           wait_for_run's timeout ran out first (also a   run_wait_timeout
│                            TimeoutError)
├── InvalidStep              the run is not at a step that accepts this action   invalid_step
├── InvalidSignal            a signal the run cannot take (finished run,       invalid_signal
│                            unknown name, key reused); the instance's code
│                            says which: signal_run_finished, unknown_signal,
│                            signal_key_conflict
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
│   ├── InvalidConcurrencyKey  a step's concurrency key has no value  invalid_concurrency_key
│   └── FlowControlUnsupported the executor cannot enforce concurrency=
│                                                              flow_control_unsupported
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

from squidmesh_sdk.errors.base import SquidmeshError
from squidmesh_sdk.errors.definitions import (
    DefinitionError,
    DefinitionUnavailable,
    InvalidTrigger,
    InvalidWorkflow,
    Issue,
)
from squidmesh_sdk.errors.infrastructure import (
    DispatchFailed,
    ExecutorNotReady,
    FlowControlUnsupported,
    InvalidConcurrencyKey,
    InvalidExecutorPayload,
    SchemaNotReady,
    SchemaTooNew,
    StaleRecord,
)
from squidmesh_sdk.errors.requests import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidPayload,
    InvalidResume,
    InvalidRunId,
    InvalidSignal,
    InvalidStep,
    InvalidTransition,
    RetryRefused,
    RunNotFound,
    UnsafeReplay,
    UnsafeRetry,
)
from squidmesh_sdk.errors.schedules import InvalidSchedule, MissingScheduleIdempotencyKey
from squidmesh_sdk.errors.steps import (
    NonRetryableError,
    OutcomeNotStored,
    RetryAfter,
    StepInputError,
    StepOutputError,
    StepSignal,
    StepTimeout,
)
from squidmesh_sdk.errors.waits import RunWaitTimeout

__all__ = [
    "DefinitionError",
    "DefinitionUnavailable",
    "DispatchFailed",
    "ExecutorNotReady",
    "FlowControlUnsupported",
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidConcurrencyKey",
    "InvalidExecutorPayload",
    "InvalidPayload",
    "InvalidResume",
    "InvalidRunId",
    "InvalidSchedule",
    "InvalidSignal",
    "InvalidStep",
    "InvalidTransition",
    "InvalidTrigger",
    "InvalidWorkflow",
    "Issue",
    "MissingScheduleIdempotencyKey",
    "NonRetryableError",
    "OutcomeNotStored",
    "RetryAfter",
    "RetryRefused",
    "RunNotFound",
    "RunWaitTimeout",
    "SchemaNotReady",
    "SchemaTooNew",
    "SquidmeshError",
    "StaleRecord",
    "StepInputError",
    "StepOutputError",
    "StepSignal",
    "StepTimeout",
    "UnsafeReplay",
    "UnsafeRetry",
]

# Public under one name, whatever module declares them: ``squidmesh_sdk.errors.RunNotFound`` in
# tracebacks, the API reference and the ``type`` of stored errors.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
