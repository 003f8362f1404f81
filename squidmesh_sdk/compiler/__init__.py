"""Turn a declared :class:`~squidmesh_sdk.definition.Workflow` into a ``WorkflowDefinition``.

:func:`compile` checks everything, collects every problem, and raises one
:class:`~squidmesh_sdk.errors.DefinitionError` listing them; nothing is half-compiled.

Modules: ``triggers`` (payload contracts, cron settings), ``steps`` (one step at a time),
``edges`` (dependencies and routes, checked as one graph), ``inputs`` (every required step
input has a source), ``issues`` (the shared collector); ``versions`` checks the set of
workflow versions a client holds.
"""

from __future__ import annotations

from typing import Literal

from squidmesh_sdk import errors
from squidmesh_sdk.compiler.edges import compile_edges
from squidmesh_sdk.compiler.inputs import check_inputs
from squidmesh_sdk.compiler.issues import NAME, VERSION, Issues
from squidmesh_sdk.compiler.steps import (
    LONGEST,
    check_signals,
    check_step_names,
    compile_step,
    seconds,
)
from squidmesh_sdk.compiler.triggers import compile_triggers
from squidmesh_sdk.definition.flow import concurrency_limit_problems, priority_problem
from squidmesh_sdk.definition.steps import StepSpec
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import COMPLETE_TARGET, StepNode, WorkflowDefinition

__all__ = ["compile"]


def compile(workflow: Workflow) -> WorkflowDefinition:
    """Validate ``workflow`` and return its immutable definition graph.

    Raises:
        DefinitionError: listing every problem found (``.issues``), when there is any.
        InvalidArgument: ``workflow`` is not a :class:`Workflow`.
    """
    if not isinstance(workflow, Workflow):
        raise errors.InvalidArgument(
            "workflow", f"compile takes a Workflow, got {type(workflow).__name__}: {workflow!r}"
        )
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
    deadline = _deadline(workflow, issues)
    priority = _priority(workflow, issues)
    concurrency = getattr(workflow, "concurrency", None)
    if concurrency is not None:
        for problem in concurrency_limit_problems(concurrency):
            issues.add("invalid_concurrency", f"workflow {problem}")
    triggers = compile_triggers(workflow.triggers, issues)
    specs = [handle.spec for handle in workflow.steps]
    names = check_step_names(workflow, specs, issues)
    nodes: dict[str, StepNode] = {}
    for spec in specs:
        node = compile_step(spec, issues)
        if node is not None:
            nodes.setdefault(spec.name, node)
    check_signals(nodes, issues)
    # Duplicates were reported above; graph checks look at the first spec of each name so one
    # mistake is not reported again as a second entry step or a duplicate route.
    unique: dict[str, StepSpec] = {}
    for spec in specs:
        if spec.name != COMPLETE_TARGET:
            unique.setdefault(spec.name, spec)
    edges, entry, nodes = compile_edges(workflow, list(unique.values()), names, nodes, issues)
    check_inputs(
        list(unique),
        nodes,
        edges,
        triggers,
        issues,
        payload_known=len(triggers) == len(list(workflow.triggers)),
    )
    if issues.items:
        raise errors.DefinitionError(str(workflow.name), issues.items)
    has_after = any(edge.kind == "after" for edge in edges)
    shape: Literal["transition", "dependency", "mixed"] = "transition"
    if has_after:
        shape = "mixed" if len(edges) > sum(e.kind == "after" for e in edges) else "dependency"
    return WorkflowDefinition(
        name=workflow.name,
        description=workflow.description,
        shape=shape,
        steps=nodes,
        edges=tuple(edges),
        entry_steps=tuple(entry),
        initial_step=entry[0] if len(entry) == 1 and not has_after else None,
        triggers=triggers,
        default_trigger=next(iter(triggers)),
        declared_version=workflow.version,
        deadline=deadline,
        priority=priority,
        concurrency=concurrency,
    )


def _priority(workflow: Workflow, issues: Issues) -> int:
    declared = getattr(workflow, "priority", 0)
    problem = priority_problem(declared)
    if problem is None:
        return int(declared)
    issues.add("invalid_priority", f"workflow {problem}")
    return 0


def _deadline(workflow: Workflow, issues: Issues) -> float | None:
    declared = getattr(workflow, "deadline", None)
    if declared is None:
        return None
    value = seconds(declared)
    if value is None or value <= 0:
        issues.add(
            "invalid_deadline",
            f"workflow deadline must be > 0 seconds ({LONGEST}), got {declared!r}",
        )
        return None
    return value
