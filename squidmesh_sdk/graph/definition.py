"""A compiled workflow: its steps, routes and triggers as one immutable graph, and its exports.

Built only by :func:`squidmesh_sdk.compiler.compile`; everything here is frozen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from squidmesh_sdk import errors
from squidmesh_sdk.definition.flow import ConcurrencyLimit
from squidmesh_sdk.graph import mermaid
from squidmesh_sdk.graph.nodes import (
    COMPLETE_TARGET,
    Edge,
    Shape,
    StepNode,
    TriggerNode,
)

__all__ = ["WorkflowDefinition", "route_cycles"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowDefinition:
    """An immutable, validated workflow graph.

    Attributes:
        name: Workflow name.
        description: Human description.
        shape: What the graph uses, for display: ``"transition"`` (routes only),
            ``"dependency"`` (``after`` only) or ``"mixed"``.
        steps: Step name to node, in declaration order.
        edges: Dependency and route edges, in declaration order.
        entry_steps: Steps that start a run (roots; the single entry of a transition workflow).
        initial_step: The entry step of a transition workflow; ``None`` for dependency graphs.
        triggers: Trigger name to trigger, in declaration order.
        default_trigger: The first declared trigger.
        fingerprint: ``sha256:`` hash of the JSON form without descriptions; changes whenever
            the graph, an option or a payload contract (types, defaults) does, not when only
            the code inside step bodies does.
        declared_version: The ``version=`` the workflow was declared with, if any.
        deadline: Longest seconds a run may take from its start, or ``None``.
        priority: The default priority of its runs' jobs (higher first).
        concurrency: The per-key concurrency limit of every step of its runs, unless a step
            declares its own; ``None``: no limit.
        cyclic_steps: Steps on a route loop: a route into one may start a new iteration.
        single_path: At most one step of a run is active at a time (one entry step, no
            ``after`` dependencies): the run's ``current_step`` names it.
        ordered_steps: The steps by phase (graph order), declaration order within a phase.
        has_choices: Some step may not run in a run that completes (a condition, a branch
            label, an error or timeout route, an approval): steps not reached are then
            recorded ``skipped`` when the run completes.
        has_timers: Runs may leave timer jobs behind when they finish (a deadline, a wait, an
            approval or pause timeout): a run's finishing transaction deletes them from the
            database queue.
        has_concurrency: Some step of its runs has a concurrency limit (its own or the
            workflow's).
        version: What runs started on this definition are pinned to: the declared version,
            or ``fp-`` and the first 16 hex digits of the fingerprint.
    """

    name: str
    description: str | None
    shape: Shape
    steps: Mapping[str, StepNode]
    edges: tuple[Edge, ...]
    entry_steps: tuple[str, ...]
    initial_step: str | None
    triggers: Mapping[str, TriggerNode]
    default_trigger: str
    declared_version: str | None = None
    deadline: float | None = None
    priority: int = 0
    concurrency: ConcurrencyLimit | None = None
    fingerprint: str = field(init=False, default="")
    version: str = field(init=False, default="")
    cyclic_steps: frozenset[str] = field(init=False, default=frozenset())
    single_path: bool = field(init=False, default=True)
    has_choices: bool = field(init=False, default=False)
    has_timers: bool = field(init=False, default=False)
    has_concurrency: bool = field(init=False, default=False)
    _routes: Mapping[str, tuple[Edge, ...]] = field(init=False, repr=False, compare=False)
    _successors: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    ordered_steps: tuple[StepNode, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", MappingProxyType(dict(self.steps)))
        object.__setattr__(self, "triggers", MappingProxyType(dict(self.triggers)))
        routes: dict[str, list[Edge]] = {}
        for edge in self.edges:
            if edge.kind != "after":
                routes.setdefault(edge.source, []).append(edge)
        object.__setattr__(
            self, "_routes", MappingProxyType({k: tuple(v) for k, v in routes.items()})
        )
        successors: dict[str, dict[str, None]] = {name: {} for name in self.steps}
        for edge in self.edges:
            if edge.source in successors and edge.target in self.steps:
                successors[edge.source][edge.target] = None
        object.__setattr__(
            self, "_successors", MappingProxyType({k: tuple(v) for k, v in successors.items()})
        )
        ordered = sorted(self.steps.values(), key=lambda node: node.phase)  # stable
        object.__setattr__(self, "ordered_steps", tuple(ordered))
        cyclic = frozenset(name for cycle in route_cycles(self.edges) for name in cycle)
        object.__setattr__(self, "cyclic_steps", cyclic)
        single = len(self.entry_steps) == 1 and not any(e.kind == "after" for e in self.edges)
        object.__setattr__(self, "single_path", single)
        choices = any(
            edge.kind not in ("ok", "after") or edge.condition is not None for edge in self.edges
        ) or any(node.kind == "approval" for node in self.steps.values())
        object.__setattr__(self, "has_choices", choices)
        timers = self.deadline is not None or any(
            node.kind == "wait" or (node.is_waiting and node.timeout is not None)
            for node in self.steps.values()
        )
        object.__setattr__(self, "has_timers", timers)
        limited = self.concurrency is not None or any(
            node.concurrency is not None for node in self.steps.values()
        )
        object.__setattr__(self, "has_concurrency", limited)
        canonical = json.dumps(_without_descriptions(self._body_dict()), sort_keys=True)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        object.__setattr__(self, "fingerprint", f"sha256:{digest}")
        object.__setattr__(self, "version", self.declared_version or f"fp-{digest[:16]}")

    def step(self, name: str) -> StepNode:
        """Return the node called ``name``.

        Raises:
            KeyError: the workflow has no such step.
        """
        return self.steps[name]

    def trigger(self, name: str | None = None) -> TriggerNode:
        """Return trigger ``name``, or the default trigger when ``name`` is ``None``.

        Raises:
            InvalidTrigger: the workflow declares no such trigger.
        """
        key = self.default_trigger if name is None else name
        try:
            return self.triggers[key]
        except KeyError:
            raise errors.InvalidTrigger(self.name, key, tuple(self.triggers)) from None

    def routes_from(self, step: str, outcome: str | None = None) -> tuple[Edge, ...]:
        """The routes leaving ``step`` (of one ``outcome`` only, if given), in declared order."""
        routes = self._routes.get(step, ())
        if outcome is None:
            return routes
        return tuple(edge for edge in routes if edge.outcome == outcome)

    def branch_labels(self, step: str) -> tuple[str, ...]:
        """The branch labels ``step`` has routes for."""
        found = (e.label for e in self._routes.get(step, ()) if e.kind == "branch" and e.label)
        return tuple(dict.fromkeys(found))

    def dependents(self, step: str) -> tuple[str, ...]:
        """Steps that list ``step`` in ``after``."""
        return tuple(e.target for e in self.edges if e.kind == "after" and e.source == step)

    def successors(self, step: str) -> tuple[str, ...]:
        """Steps an edge of any kind leads to from ``step`` (``COMPLETE`` left out)."""
        return self._successors.get(step, ())

    def _body_dict(self) -> dict[str, Any]:
        # Keys appear only when used, so a graph that uses none of the newer features keeps
        # the fingerprint (and derived version) it had before they existed.
        extra: dict[str, Any] = {}
        if self.deadline is not None:
            extra["deadline"] = self.deadline
        return {
            **extra,
            "name": self.name,
            "description": self.description,
            "shape": self.shape,
            "entry_steps": list(self.entry_steps),
            "initial_step": self.initial_step,
            "default_trigger": self.default_trigger,
            "triggers": [trigger.to_dict() for trigger in self.triggers.values()],
            "steps": [node.to_dict() for node in self.steps.values()],
            "edges": [edge.to_dict() for edge in self.edges],
        }

    def concurrency_of(self, step: str) -> ConcurrencyLimit | None:
        """The concurrency limit of step ``step`` (a name): its own, else the workflow's."""
        node = self.steps.get(step)
        if node is not None and node.concurrency is not None:
            return node.concurrency
        return self.concurrency

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form with a stable key and list order, plus the fingerprint."""
        data = {**self._body_dict(), "version": self.version, "fingerprint": self.fingerprint}
        # Flow control is exported but kept out of the fingerprint: it is an operational knob,
        # and changing a limit or a priority must not make a new version (runs pinned to the
        # old one would need a worker still holding it).
        if self.priority:
            data["priority"] = self.priority
        if self.concurrency is not None:
            data["concurrency"] = self.concurrency.to_dict()
        for step in data["steps"]:
            node = self.steps.get(step["name"])
            if node is not None and node.concurrency is not None:
                step["concurrency"] = node.concurrency.to_dict()
        return data

    def to_json(self, *, indent: int | None = 2) -> str:
        """The :meth:`to_dict` form as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart`` of the graph.

        Dependency edges are plain arrows; routes are labelled arrows (their outcome or branch
        label, and their condition); ``error`` and ``timeout`` routes are dotted, an error
        route labelled with its recovery marker when it has one. An approval's routes read
        ``approved`` and ``rejected``; a map step's box names its list.
        """
        return mermaid.flowchart(self.steps, self.edges)


def route_cycles(edges: tuple[Edge, ...]) -> tuple[frozenset[str], ...]:
    """The loops of routes: sets of steps that routes lead around (strongly connected).

    Tarjan's algorithm over route edges; ``after`` edges never form loops (the compiler
    rejects dependency cycles).
    """
    graph: dict[str, list[str]] = {}
    for edge in edges:
        if edge.kind != "after" and edge.target != COMPLETE_TARGET:
            graph.setdefault(edge.source, []).append(edge.target)
            graph.setdefault(edge.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[frozenset[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(frozenset(component))

    for node in graph:
        if node not in index:
            connect(node)
    return tuple(cycles)


def _without_descriptions(data: Any) -> Any:
    """Drop human descriptions: rewording a docstring is not a new workflow version."""
    if isinstance(data, dict):
        return {k: _without_descriptions(v) for k, v in data.items() if k != "description"}
    if isinstance(data, list):
        return [_without_descriptions(item) for item in data]
    return data
