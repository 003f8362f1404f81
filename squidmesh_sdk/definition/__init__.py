"""The authoring layer: declare workflows in plain Python.

Pure: no I/O and no database. The compiler (:mod:`squidmesh_sdk.compiler`) turns what is
declared here into an immutable :class:`~squidmesh_sdk.graph.WorkflowDefinition`.
"""

from squidmesh_sdk.definition.conditions import Condition, when
from squidmesh_sdk.definition.context import StepContext
from squidmesh_sdk.definition.defaults import now, today
from squidmesh_sdk.definition.flow import ConcurrencyLimit, RateLimit
from squidmesh_sdk.definition.options import Backoff, Duration, Retry
from squidmesh_sdk.definition.outcomes import COMPLETE, Branch, Complete, Outcome, RecoveryLabel
from squidmesh_sdk.definition.steps import (
    BuiltinStep,
    LogLevel,
    ParentClosePolicy,
    Step,
    StepHandle,
    StepKind,
    StepRef,
    StepSpec,
    TransitionSpec,
)
from squidmesh_sdk.definition.triggers import CronIdempotency, TriggerSpec, cron, manual
from squidmesh_sdk.definition.workflow import Workflow

__all__ = [
    "COMPLETE",
    "Backoff",
    "Branch",
    "BuiltinStep",
    "Complete",
    "ConcurrencyLimit",
    "Condition",
    "CronIdempotency",
    "Duration",
    "LogLevel",
    "Outcome",
    "ParentClosePolicy",
    "RateLimit",
    "RecoveryLabel",
    "Retry",
    "Step",
    "StepContext",
    "StepHandle",
    "StepKind",
    "StepRef",
    "StepSpec",
    "TransitionSpec",
    "TriggerSpec",
    "Workflow",
    "cron",
    "manual",
    "now",
    "today",
    "when",
]
