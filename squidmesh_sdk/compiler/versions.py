"""The workflow versions a client holds: each compiled once, the set checked as a whole.

A client may be given several versions of one workflow (runs started on an older version
finish on it). Two definitions of one name and version are refused, and so is a ``child``
step that starts a workflow the client is not given: any worker built from the client may
deliver that step, and it starts the child on the child workflow's current definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from squidmesh_sdk import errors
from squidmesh_sdk.compiler import compile as compile_workflow
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import WorkflowDefinition

__all__ = ["Versions", "current", "held_versions"]

Versions = dict[str, dict[str, WorkflowDefinition]]
"""Each workflow name to its definitions by version, in the order they were given."""


def held_versions(workflows: Iterable[Workflow | WorkflowDefinition]) -> Versions:
    """Compile ``workflows`` (definitions are taken as they are) and check them together.

    Raises:
        DefinitionError: a workflow does not compile.
        InvalidArgument: two are the same version of one workflow, or a child step starts a
            workflow not among them.
    """
    versions: Versions = {}
    for workflow in workflows:
        definition = (
            workflow if isinstance(workflow, WorkflowDefinition) else compile_workflow(workflow)
        )
        held = versions.setdefault(definition.name, {})
        if definition.version in held:
            raise errors.InvalidArgument(
                "workflows",
                f"two workflows are named {definition.name!r} at version "
                f"{definition.version!r}; give each version of a workflow its own version=",
            )
        held[definition.version] = definition
    _check_children(versions)
    return versions


def current(versions: Versions) -> dict[str, WorkflowDefinition]:
    """Each workflow's current definition, the last version given: new runs start on it."""
    return {name: list(held.values())[-1] for name, held in versions.items()}


def _check_children(versions: Mapping[str, Mapping[str, WorkflowDefinition]]) -> None:
    """Refuse workflows whose ``child`` steps start a workflow not held.

    One that lacks it could only fail the child step's delivery until its job is
    dead-lettered: refused here instead, where the fix is one line.
    """
    for name, held in versions.items():
        for definition in held.values():
            for node in definition.steps.values():
                wanted = node.options.get("workflow") if node.kind == "child" else None
                if isinstance(wanted, str) and wanted not in versions:
                    raise errors.InvalidArgument(
                        "workflows",
                        f"workflow {name!r} (version {definition.version!r}): child step "
                        f"{node.name!r} starts workflow {wanted!r}, which is not in workflows=; "
                        "give the client both (a worker delivering the step starts the child)",
                    )
