"""Compile the two workflow shapes: dependency graphs and transition routes."""

from __future__ import annotations

import dataclasses

from squidmesh_sdk.compiler.issues import Issues
from squidmesh_sdk.definition.outcomes import Complete
from squidmesh_sdk.definition.steps import StepHandle, StepRef, StepSpec
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import (
    COMPLETE_TARGET,
    Edge,
    StepNode,
)


def _resolve(
    workflow: Workflow,
    ref: StepRef,
    names: set[str],
    issues: Issues,
    *,
    step: str | None,
    role: str,
) -> str | None:
    """Return the declared name ``ref`` points at, recording an issue when it points nowhere."""
    if isinstance(ref, StepHandle):
        if ref.workflow is not workflow:
            issues.add(
                "foreign_step",
                f"{role} {ref.name!r} (used by {step or 'a route'}) was declared on another "
                f"workflow object ({ref.workflow.name!r}), not on this {workflow.name!r}",
                step=step,
            )
            return None
        return ref.name
    if isinstance(ref, str) and ref in names:
        return ref
    code = "unknown_dependency" if role == "dependency" else "unknown_route_step"
    where = f"step {step!r}: " if step is not None else ""
    issues.add(code, f"{where}{role} {ref!r} is not a step of this workflow", step=step)
    return None


def compile_dependencies(
    workflow: Workflow,
    specs: list[StepSpec],
    names: set[str],
    nodes: dict[str, StepNode],
    issues: Issues,
) -> tuple[list[Edge], list[str], dict[str, StepNode]]:
    """Resolve ``after`` lists into edges, find roots and phases; report cycles."""
    if workflow.transitions:
        issues.add(
            "mixed_shapes",
            "a workflow uses either after=[...] dependencies or transition routes, not both",
        )
    deps: dict[str, tuple[str, ...]] = {}
    edges: list[Edge] = []
    for spec in specs:
        resolved: list[str] = []
        if spec.after is not None and not spec.after:
            issues.add(
                "empty_after",
                f"step {spec.name!r}: after=[] is empty; omit after= to make it a root",
                step=spec.name,
            )
        for ref in spec.after or ():
            dep = _resolve(workflow, ref, names, issues, step=spec.name, role="dependency")
            if dep is None:
                continue
            if dep == spec.name:
                issues.add("self_dependency", f"step {spec.name!r} depends on itself", spec.name)
            elif dep not in resolved:
                resolved.append(dep)
                edges.append(Edge(source=dep, target=spec.name, kind="after"))
        deps.setdefault(spec.name, tuple(resolved))
    phases = _phases(deps, issues)
    entry = [name for name, needs in deps.items() if not needs]
    if phases is None:
        return edges, entry, nodes
    staged = {
        name: dataclasses.replace(node, depends_on=deps[name], phase=phases[name])
        for name, node in nodes.items()
    }
    return edges, entry, staged


def _phases(deps: dict[str, tuple[str, ...]], issues: Issues) -> dict[str, int] | None:
    """Longest-path depth of each step; ``None`` (with an issue) when there is a cycle."""
    phases: dict[str, int] = {}
    visiting: list[str] = []
    blocked: set[str] = set()  # on or behind a reported cycle: report each cycle once

    def visit(name: str) -> int | None:
        if name in phases:
            return phases[name]
        if name in blocked:
            return None
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            issues.add("dependency_cycle", "dependency cycle: " + " -> ".join(cycle), step=name)
            blocked.update(cycle)
            return None
        visiting.append(name)
        depths = [visit(dep) for dep in deps.get(name, ())]
        visiting.pop()
        if any(depth is None for depth in depths):
            blocked.add(name)
            return None
        phases[name] = 1 + max((d for d in depths if d is not None), default=-1)
        return phases[name]

    ok = [visit(name) for name in deps]
    return phases if all(depth is not None for depth in ok) else None


def compile_routes(
    workflow: Workflow, specs: list[StepSpec], names: set[str], issues: Issues
) -> tuple[list[Edge], list[str]]:
    """Resolve routes into edges and check entry, coverage, reachability and termination."""
    start = len(issues.items)
    edges: list[Edge] = []
    routed: set[tuple[str, str]] = set()
    declared: set[tuple[str, str]] = set()  # includes routes whose target was unknown
    for transition in workflow.transitions:
        source = _resolve(
            workflow, transition.source, names, issues, step=None, role="route source"
        )
        if transition.outcome not in ("ok", "error"):
            issues.add(
                "invalid_outcome",
                f"route from {source!r}: outcome must be 'ok' or 'error', got "
                f"{transition.outcome!r}",
                step=source,
            )
            continue
        target: str | None
        if isinstance(transition.target, Complete):
            target = COMPLETE_TARGET
        else:
            target = _resolve(
                workflow, transition.target, names, issues, step=source, role="route target"
            )
        if transition.recovery is not None:
            if transition.outcome != "error":
                issues.add(
                    "recovery_on_ok_route",
                    f"route {source!r} -ok->: only error routes take a recovery label",
                    step=source,
                )
            elif transition.recovery not in ("compensation", "undo"):
                issues.add(
                    "invalid_recovery_label",
                    f"route {source!r} -error->: recovery must be 'compensation' or 'undo', got "
                    f"{transition.recovery!r}",
                    step=source,
                )
        if source is not None:
            declared.add((source, transition.outcome))
        if source is None or target is None:
            continue
        if (source, transition.outcome) in routed:
            issues.add(
                "duplicate_route",
                f"step {source!r} has more than one {transition.outcome!r} route",
                step=source,
            )
            continue
        routed.add((source, transition.outcome))
        edge = Edge(
            source=source, target=target, kind=transition.outcome, recovery=transition.recovery
        )
        edges.append(edge)
    targets = {edge.target for edge in edges}
    entry = [spec.name for spec in specs if spec.name not in targets]
    if specs and len(entry) != 1:
        found = ", ".join(entry) if entry else "none (every step is a route target)"
        issues.add(
            "entry_step_count",
            f"a transition workflow needs exactly one entry step (a step no route leads to); "
            f"found: {found}",
        )
    for spec in specs:
        needed = ("ok", "error") if spec.kind == "approval" else ("ok",)
        for outcome in needed:
            if (spec.name, outcome) not in declared:
                code = "approval_routes_required" if spec.kind == "approval" else "missing_ok_route"
                issues.add(
                    code,
                    f"step {spec.name!r} has no {outcome!r} route; declare "
                    f"wf.transition({spec.name}, on={outcome!r}, to=...) (COMPLETE to finish)",
                    step=spec.name,
                )
    # A missing or unknown route already explains why COMPLETE may be out of reach.
    sound = len(issues.items) == start
    if len(entry) == 1:
        reachable = _reachable(entry[0], edges)
        finishing = _reachable(COMPLETE_TARGET, [_reversed(edge) for edge in edges])
        for spec in specs:
            if spec.name not in reachable:
                issues.add(
                    "unreachable_step",
                    f"step {spec.name!r} cannot be reached from entry step {entry[0]!r}",
                    step=spec.name,
                )
            elif sound and spec.name not in finishing:
                issues.add(
                    "no_path_to_complete",
                    f"step {spec.name!r} has no route path that ends in COMPLETE (a loop): runs "
                    "reaching it could never finish",
                    step=spec.name,
                )
    return edges, entry


def _reversed(edge: Edge) -> Edge:
    return dataclasses.replace(edge, source=edge.target, target=edge.source)


def _reachable(start: str, edges: list[Edge]) -> set[str]:
    seen = {start}
    frontier = [start]
    while frontier:
        current = frontier.pop()
        for edge in edges:
            if edge.source == current and edge.target not in seen:
                seen.add(edge.target)
                frontier.append(edge.target)
    return seen
