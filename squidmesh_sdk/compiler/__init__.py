"""Turn a declared :class:`~squidmesh_sdk.definition.Workflow` into a ``WorkflowDefinition``.

:func:`compile` checks everything, collects every problem, and raises one
:class:`~squidmesh_sdk.errors.DefinitionError` listing them; nothing is half-compiled.

Modules: ``triggers`` (payload contracts, cron settings), ``steps`` (one step at a time),
``shapes`` (dependency graphs and transition routes), ``issues`` (the shared collector).
"""

from __future__ import annotations

from typing import Literal

from squidmesh_sdk import errors
from squidmesh_sdk.compiler.issues import NAME, VERSION, Issues
from squidmesh_sdk.compiler.shapes import compile_dependencies, compile_routes
from squidmesh_sdk.compiler.steps import check_step_names, compile_step
from squidmesh_sdk.compiler.triggers import compile_triggers
from squidmesh_sdk.definition.steps import StepSpec
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import COMPLETE_TARGET, StepNode, WorkflowDefinition

__all__ = ["compile"]


def compile(workflow: Workflow) -> WorkflowDefinition:
    """Validate ``workflow`` and return its immutable definition graph.

    Raises:
        DefinitionError: listing every problem found (``.issues``), when there is any.
    """
    issues = Issues()
    if not isinstance(workflow.name, str) or not NAME.match(workflow.name):
        issues.add("invalid_name", f"workflow name {workflow.name!r} must match {NAME.pattern}")
    if workflow.version is not None and (
        not isinstance(workflow.version, str) or not VERSION.match(workflow.version)
    ):
        issues.add(
            "invalid_version",
            f"workflow version {workflow.version!r} must match {VERSION.pattern}",
        )
    triggers = compile_triggers(workflow.triggers, issues)
    specs = [handle.spec for handle in workflow.steps]
    names = check_step_names(workflow, specs, issues)
    shape: Literal["transition", "dependency"] = (
        "dependency" if any(spec.after is not None for spec in specs) else "transition"
    )
    nodes: dict[str, StepNode] = {}
    for spec in specs:
        node = compile_step(spec, shape, issues)
        if node is not None:
            nodes.setdefault(spec.name, node)
    # Duplicates were reported above; shape checks look at the first spec of each name so one
    # mistake is not reported again as a second entry step or a duplicate route.
    unique: dict[str, StepSpec] = {}
    for spec in specs:
        if spec.name != COMPLETE_TARGET:
            unique.setdefault(spec.name, spec)
    specs = list(unique.values())
    if shape == "dependency":
        edges, entry, nodes = compile_dependencies(workflow, specs, names, nodes, issues)
        initial: str | None = None
    else:
        edges, entry = compile_routes(workflow, specs, names, issues)
        initial = entry[0] if len(entry) == 1 else None
    if issues.items:
        raise errors.DefinitionError(str(workflow.name), issues.items)
    return WorkflowDefinition(
        name=workflow.name,
        description=workflow.description,
        shape=shape,
        steps=nodes,
        edges=tuple(edges),
        entry_steps=tuple(entry),
        initial_step=initial,
        triggers=triggers,
        default_trigger=next(iter(triggers)),
        declared_version=workflow.version,
    )
