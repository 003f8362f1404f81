"""The runtime's surroundings: the schema, the executor, deliveries that lost a race."""

from __future__ import annotations

from squidmesh_sdk.errors.base import SquidmeshError

__all__ = [
    "DispatchFailed",
    "ExecutorNotReady",
    "FlowControlUnsupported",
    "InvalidConcurrencyKey",
    "InvalidExecutorPayload",
    "SchemaNotReady",
    "SchemaTooNew",
    "StaleRecord",
]


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


class InvalidConcurrencyKey(DispatchFailed):
    """A step's concurrency key has no usable value when its job is queued.

    The key's path is missing from the payload or context, or its value is not a string,
    number or boolean. Raised by ``start_run`` (nothing is written); a later step's job fails
    its run with this code in the transaction that would have queued it.

    Attributes:
        workflow: The workflow.
        step: The step whose job was being queued.
        key: The declared key path (``payload.customer_id``).
    """

    code = "invalid_concurrency_key"

    def __init__(self, workflow: str, step: str, key: str) -> None:
        self.workflow = workflow
        self.step = step
        self.key = key
        super().__init__(
            f"step {step!r} of workflow {workflow!r} is limited per {key!r}, but the run has "
            f"no string, number or boolean at {key!r}"
        )


class FlowControlUnsupported(DispatchFailed):
    """The executor cannot enforce a workflow's ``concurrency=`` limit.

    Only the built-in database queue enforces per-key concurrency limits (the inline executor
    accepts them, see docs/workers.md, "Flow control"). Raised by ``start_run`` before anything
    is written.

    Attributes:
        workflow: The workflow that declares the limit.
        executor: The executor's class name.
    """

    code = "flow_control_unsupported"

    def __init__(self, workflow: str, executor: str) -> None:
        self.workflow = workflow
        self.executor = executor
        super().__init__(
            f"workflow {workflow!r} declares a concurrency limit, which {executor} cannot "
            "enforce: use the database queue (DatabaseExecutor), or remove concurrency="
        )


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
