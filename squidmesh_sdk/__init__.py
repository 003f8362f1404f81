"""squidmesh_sdk: durable, code-first workflows inside your application and its database.

Declare a workflow with decorated functions, compile it to an immutable graph::

    from pydantic import BaseModel
    from squidmesh_sdk import COMPLETE, Retry, Workflow, compile, manual

    class Order(BaseModel):
        order_id: str

    orders = Workflow("orders", triggers=[manual("place", payload=Order)])

    @orders.step(retry=Retry(max_attempts=3, backoff=Retry.exponential(min=1, max=30)))
    def charge(order_id: str) -> dict[str, str]:
        return {"charge_id": f"ch_{order_id}"}

    orders.chain(charge, COMPLETE)
    definition = compile(orders)
"""

import logging

from squidmesh_sdk.async_client import AsyncClient, AsyncRunHandle
from squidmesh_sdk.client import Client, RunHandle
from squidmesh_sdk.compiler import compile
from squidmesh_sdk.definition import (
    COMPLETE,
    Backoff,
    Branch,
    BuiltinStep,
    ConcurrencyLimit,
    Condition,
    RateLimit,
    Retry,
    Step,
    StepContext,
    StepHandle,
    StepSpec,
    TransitionSpec,
    TriggerSpec,
    Workflow,
    cron,
    manual,
    now,
    today,
    when,
)
from squidmesh_sdk.errors import (
    DefinitionError,
    DefinitionUnavailable,
    DispatchFailed,
    ExecutorNotReady,
    FlowControlUnsupported,
    IdempotencyConflict,
    InvalidArgument,
    InvalidConcurrencyKey,
    InvalidExecutorPayload,
    InvalidPayload,
    InvalidResume,
    InvalidRunId,
    InvalidSchedule,
    InvalidSignal,
    InvalidStep,
    InvalidTransition,
    InvalidTrigger,
    InvalidWorkflow,
    Issue,
    MissingScheduleIdempotencyKey,
    NonRetryableError,
    OutcomeNotStored,
    RetryAfter,
    RetryRefused,
    RunNotFound,
    RunWaitTimeout,
    SchemaNotReady,
    SchemaTooNew,
    SquidmeshError,
    StaleRecord,
    StepInputError,
    StepOutputError,
    StepTimeout,
    UnsafeReplay,
    UnsafeRetry,
)
from squidmesh_sdk.executors import DatabaseExecutor, Executor, InlineExecutor, Worker
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.runtime.explanation import RunExplanation
from squidmesh_sdk.runtime.retention import PurgeResult
from squidmesh_sdk.runtime.runner import CronStart
from squidmesh_sdk.store.database import Database
from squidmesh_sdk.store.flow import QueueLimits
from squidmesh_sdk.store.records import (
    Attempt,
    AuditEvent,
    ChildRun,
    Run,
    Signal,
    StepRun,
    StepState,
)

__all__ = [
    "COMPLETE",
    "AsyncClient",
    "AsyncRunHandle",
    "Attempt",
    "AuditEvent",
    "Backoff",
    "Branch",
    "BuiltinStep",
    "ChildRun",
    "Client",
    "ConcurrencyLimit",
    "Condition",
    "CronStart",
    "Database",
    "DatabaseExecutor",
    "DefinitionError",
    "DefinitionUnavailable",
    "DispatchFailed",
    "Executor",
    "ExecutorNotReady",
    "FlowControlUnsupported",
    "IdempotencyConflict",
    "InlineExecutor",
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
    "PurgeResult",
    "QueueLimits",
    "RateLimit",
    "Retry",
    "RetryAfter",
    "RetryRefused",
    "Run",
    "RunExplanation",
    "RunHandle",
    "RunNotFound",
    "RunWaitTimeout",
    "SchemaNotReady",
    "SchemaTooNew",
    "Signal",
    "SquidmeshError",
    "StaleRecord",
    "Step",
    "StepContext",
    "StepHandle",
    "StepInputError",
    "StepOutputError",
    "StepRun",
    "StepSpec",
    "StepState",
    "StepTimeout",
    "TransitionSpec",
    "TriggerSpec",
    "UnsafeReplay",
    "UnsafeRetry",
    "Worker",
    "Workflow",
    "WorkflowDefinition",
    "compile",
    "cron",
    "manual",
    "now",
    "today",
    "when",
]

__version__ = "0.1.0.dev0"

# A library configures no logging: without this, Python would print the runtime's warnings
# (a failed step, a retry) to stderr in an application that set up no logging of its own.
logging.getLogger(__name__).addHandler(logging.NullHandler())
