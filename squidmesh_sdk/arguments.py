"""Checks of the arguments of public calls, so bad input raises ``InvalidArgument``.

Only what the deeper layers would otherwise reject with a bare ``TypeError``,
``AttributeError`` or a driver error (a NUL character in a name sent to PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from squidmesh_sdk import errors
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.store.database import Database

__all__ = ["check_client", "trigger_name", "workflow_name"]


def workflow_name(workflow: object) -> str:
    """The name of a workflow given as an object, a definition or a name."""
    if isinstance(workflow, Workflow | WorkflowDefinition):
        return workflow.name
    if not isinstance(workflow, str) or "\x00" in workflow:
        raise errors.InvalidArgument(
            "workflow",
            f"workflow must be a Workflow, a WorkflowDefinition or a name, got {workflow!r}",
        )
    return workflow


def trigger_name(trigger: object) -> str:
    """``trigger``, checked to be a name."""
    if not isinstance(trigger, str) or "\x00" in trigger:
        raise errors.InvalidArgument("trigger", f"trigger must be a trigger name, got {trigger!r}")
    return trigger


def check_client(database: object, workflows: object, stale_step_timeout: object) -> None:
    """Check the arguments of :class:`~squidmesh_sdk.Client` before anything is built."""
    if not isinstance(database, str | sa.URL | Engine | Database):
        raise errors.InvalidArgument(
            "database", f"database must be a URL, an Engine or a Database, got {database!r}"
        )
    timeout = stale_step_timeout
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise errors.InvalidArgument(
            "stale_step_timeout",
            f"stale_step_timeout must be > 0 seconds, got {stale_step_timeout!r}",
        )
    if isinstance(workflows, str | bytes) or not isinstance(workflows, Iterable):
        raise errors.InvalidArgument(
            "workflows", f"workflows must be an iterable of workflows, got {workflows!r}"
        )
    if not isinstance(workflows, Collection):
        return  # a one-shot iterable is checked as it is compiled
    strays = [w for w in workflows if not isinstance(w, Workflow | WorkflowDefinition)]
    if strays:
        raise errors.InvalidArgument(
            "workflows",
            f"workflows must be Workflow or WorkflowDefinition objects, got {strays!r}",
        )
