"""The runtime's surroundings: the schema, the executor, deliveries that lost a race."""

from __future__ import annotations

from squidmesh_sdk.errors.base import SquidmeshError

__all__ = [
    "DispatchFailed",
    "ExecutorNotReady",
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
