"""Compile the graph's edges: ``after`` dependencies and routes, checked together.

One graph holds both kinds of edge. The checks here are about the graph as a whole: every
reference resolves, every route is unambiguous, some step starts the run, every step can be
reached, dependencies have no cycle, and every loop of routes waits (a timer, a pause or an
approval) and has a way out.
"""

from __future__ import annotations

import dataclasses

from squidmesh_sdk.compiler.issues import NAME, Issues
from squidmesh_sdk.definition.conditions import condition_problems
from squidmesh_sdk.definition.outcomes import Complete
from squidmesh_sdk.definition.steps import StepHandle, StepRef, StepSpec
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import COMPLETE_TARGET, Edge, StepNode, route_cycles

__all__ = ["compile_edges"]

_OUTCOMES = ("ok", "error", "timeout")


def compile_edges(
    workflow: Workflow,
    specs: list[StepSpec],
    names: set[str],
    nodes: dict[str, StepNode],
    issues: Issues,
) -> tuple[list[Edge], list[str], dict[str, StepNode]]:
    """Resolve dependencies and routes; return the edges, the entry steps and staged nodes.

    Nodes of steps with ``after=`` get their ``depends_on`` and every node a ``phase`` (its
    depth from the entry steps, for display) when the dependencies have no cycle.
    """
    start = len(issues.items)
    kinds = {spec.name: spec for spec in specs}
    deps, after_edges = _dependencies(workflow, specs, names, issues)
    routes = _routes(workflow, kinds, names, issues)
    edges = after_edges + routes
    route_targets = {edge.target for edge in routes}
    for spec in specs:
        if deps.get(spec.name) and spec.name in route_targets:
            issues.add(
                "activation_conflict",
                f"step {spec.name!r} has after= dependencies and is also a route target: a "
                "step starts either when its dependencies settle or when a route fires into it",
                step=spec.name,
            )
    targets = {edge.target for edge in edges}
    entry = [spec.name for spec in specs if spec.name not in targets]
    if specs and not entry:
        # Every step is a route target: a loop comes back to the start. The first declared
        # step without dependencies starts the run (``draft -> review -> back to draft``).
        first = next((spec.name for spec in specs if not deps.get(spec.name)), None)
        if first is None:
            issues.add(
                "no_entry_step",
                "no step starts the run: every step has after= dependencies",
            )
        else:
            entry = [first]
    phases = _dependency_cycles(deps, issues)
    reachable = _reachable(entry, edges)
    for spec in specs:
        if spec.name not in reachable and entry:
            issues.add(
                "unreachable_step",
                f"step {spec.name!r} cannot be reached from the entry step(s) "
                f"{', '.join(repr(name) for name in entry)}",
                step=spec.name,
            )
    _check_loops(kinds, deps, edges, issues, sound=len(issues.items) == start)
    if phases is None:
        return edges, entry, nodes
    depth = _phases(list(nodes), edges)
    staged = {
        name: dataclasses.replace(node, depends_on=deps.get(name, ()), phase=depth.get(name, 0))
        for name, node in nodes.items()
    }
    return edges, entry, staged


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


def _dependencies(
    workflow: Workflow, specs: list[StepSpec], names: set[str], issues: Issues
) -> tuple[dict[str, tuple[str, ...]], list[Edge]]:
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
    return deps, edges


def _routes(
    workflow: Workflow, specs: dict[str, StepSpec], names: set[str], issues: Issues
) -> list[Edge]:
    """Resolve routes into edges; report bad outcomes, conditions and ambiguous routes."""
    edges: list[Edge] = []
    for transition in workflow.transitions:
        source = _resolve(
            workflow, transition.source, names, issues, step=None, role="route source"
        )
        outcome = transition.outcome
        if not isinstance(outcome, str) or not (outcome in _OUTCOMES or NAME.match(outcome)):
            issues.add(
                "invalid_outcome",
                f"route from {source!r}: on= must be 'ok', 'error', 'timeout' or a branch "
                f"label (an identifier), got {outcome!r}",
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
        spec = specs.get(source) if source is not None else None
        ok = _check_route(transition.recovery, transition.condition, outcome, source, spec, issues)
        if not ok or source is None or target is None:
            continue
        kind = outcome if outcome in _OUTCOMES else "branch"
        edges.append(
            Edge(
                source=source,
                target=target,
                kind=kind,  # type: ignore[arg-type]
                recovery=transition.recovery,
                label=outcome if kind == "branch" else None,
                condition=transition.condition,
            )
        )
    return _unambiguous(edges, issues)


def _check_route(
    recovery: object,
    condition: object,
    outcome: str,
    source: str | None,
    spec: StepSpec | None,
    issues: Issues,
) -> bool:
    start = len(issues.items)
    route = f"route {source!r} -{outcome}->"
    if recovery is not None:
        if outcome != "error":
            issues.add(
                "recovery_on_ok_route",
                f"{route}: only error routes take a recovery label",
                step=source,
            )
        elif recovery not in ("compensation", "undo"):
            issues.add(
                "invalid_recovery_label",
                f"{route}: recovery must be 'compensation' or 'undo', got {recovery!r}",
                step=source,
            )
    if condition is not None:
        if outcome in ("error", "timeout"):
            issues.add(
                "condition_on_failure_route",
                f"{route}: only 'ok' and branch routes take a when= condition",
                step=source,
            )
        for problem in condition_problems(condition):
            issues.add("invalid_condition", f"{route}: {problem}", step=source)
    if spec is not None:
        if outcome not in _OUTCOMES and spec.kind != "function":
            issues.add(
                "branch_on_builtin",
                f"{route}: a built-in {spec.kind} step returns no branch label; only function "
                "steps can take a labelled route",
                step=source,
            )
        timed = ("pause", "approval", "signal", "child")
        if outcome == "timeout" and (spec.kind not in timed or not spec.timeout):
            issues.add(
                "timeout_route_without_timeout",
                f"{route}: only a pause, approval, signal or child step declared with timeout= "
                "can time out",
                step=source,
            )
    return len(issues.items) == start


def _unambiguous(edges: list[Edge], issues: Issues) -> list[Edge]:
    """Keep one route per (step, outcome, condition); a conditional outcome needs a default."""
    kept: list[Edge] = []
    seen: set[tuple[str, str, str]] = set()
    conditional: dict[tuple[str, str], bool] = {}
    default: set[tuple[str, str]] = set()
    for edge in edges:
        key = (edge.source, edge.outcome)
        condition = repr(edge.condition.to_dict()) if edge.condition is not None else ""
        if (*key, condition) in seen:
            what = f"when {edge.condition.describe()}" if edge.condition else "without a condition"
            issues.add(
                "duplicate_route",
                f"step {edge.source!r} has more than one {edge.outcome!r} route {what}",
                step=edge.source,
            )
            continue
        seen.add((*key, condition))
        if edge.condition is None:
            default.add(key)
        else:
            conditional[key] = True
        kept.append(edge)
    for source, outcome in conditional:
        if (source, outcome) not in default:
            issues.add(
                "missing_default_route",
                f"step {source!r}: its {outcome!r} routes all have conditions; declare one "
                f"without when= for when none holds",
                step=source,
            )
    return kept


def _dependency_cycles(deps: dict[str, tuple[str, ...]], issues: Issues) -> dict[str, int] | None:
    """Depth of each step over ``after`` edges; ``None`` (with an issue) on a cycle."""
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


def _check_loops(
    specs: dict[str, StepSpec],
    deps: dict[str, tuple[str, ...]],
    edges: list[Edge],
    issues: Issues,
    *,
    sound: bool,
) -> None:
    """Every route loop must wait somewhere, keep joins out, and have a way out."""
    joined = {dep for needs in deps.values() for dep in needs} | {n for n, d in deps.items() if d}
    finishing = _finishing(specs, edges)
    for cycle in route_cycles(tuple(edges)):
        members = sorted(cycle, key=list(specs).index)
        loop = " -> ".join(members)
        if not any(specs[name].kind in ("wait", "pause", "approval", "signal") for name in members):
            issues.add(
                "loop_without_wait",
                f"route loop {loop} has no wait, pause, approval or signal step: it could spin "
                "without end; put one in the loop",
                step=members[0],
            )
        for name in members:
            if name in joined:
                issues.add(
                    "join_in_loop",
                    f"step {name!r} is on route loop {loop} and takes part in after= "
                    "dependencies: a step in a loop may run several times, so joins cannot "
                    "wait for it; route out of the loop instead",
                    step=name,
                )
        if sound and not cycle & finishing:
            issues.add(
                "no_path_to_complete",
                f"route loop {loop} has no way out: every outcome of its steps routes back "
                "into it, so runs reaching it could never finish",
                step=members[0],
            )


def _finishing(specs: dict[str, StepSpec], edges: list[Edge]) -> set[str]:
    """Steps from which some path of routes ends (a step with no ``ok`` route, or COMPLETE)."""
    has_ok = {edge.source for edge in edges if edge.kind == "ok"}
    ends = {name for name in specs if name not in has_ok}
    ends |= {edge.source for edge in edges if edge.target == COMPLETE_TARGET}
    finishing = set(ends)
    frontier = list(ends)
    while frontier:
        current = frontier.pop()
        for edge in edges:
            if edge.target == current and edge.source not in finishing:
                finishing.add(edge.source)
                frontier.append(edge.source)
    return finishing


def _reachable(entry: list[str], edges: list[Edge]) -> set[str]:
    seen = set(entry)
    frontier = list(entry)
    while frontier:
        current = frontier.pop()
        for edge in edges:
            if edge.source == current and edge.target not in seen:
                seen.add(edge.target)
                frontier.append(edge.target)
    return seen


def _phases(names: list[str], edges: list[Edge]) -> dict[str, int]:
    """Each step's longest distance from a step nothing leads to, loops counted once.

    Over ``after`` edges alone this is 1 + the largest phase of the dependencies.
    """
    incoming: dict[str, list[str]] = {name: [] for name in names}
    for edge in edges:
        if edge.target in incoming and edge.source in incoming:
            incoming[edge.target].append(edge.source)
    phase: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(name: str) -> int:
        if name in phase:
            return phase[name]
        visiting.add(name)
        # An edge from a step still being visited closes a loop: it does not add depth.
        depths = [visit(src) for src in incoming[name] if src not in visiting]
        visiting.discard(name)
        phase[name] = 1 + max(depths, default=-1)
        return phase[name]

    for name in names:
        visit(name)
    return phase
