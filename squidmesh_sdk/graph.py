"""The compiled, immutable workflow graph and its JSON / Mermaid exports.

Built only by :func:`squidmesh_sdk.compiler.compile`; everything here is frozen.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from squidmesh_sdk import errors
from squidmesh_sdk.contracts import PayloadContract, StepBody
from squidmesh_sdk.definition.conditions import Condition
from squidmesh_sdk.definition.flow import ConcurrencyLimit

__all__ = [
    "COMPLETE_TARGET",
    "DEADLINE_STEP",
    "Edge",
    "RecoveryPolicy",
    "RetryPolicy",
    "StepKey",
    "StepNode",
    "TriggerNode",
    "WorkflowDefinition",
    "route_cycles",
]

COMPLETE_TARGET = "__complete__"
"""Route target name meaning "complete the run" (the graph form of ``COMPLETE``)."""

DEADLINE_STEP = "__deadline__"
"""The job name of a run's deadline: delivered like a step, it fails a run still unfinished."""

Shape = Literal["transition", "dependency", "mixed"]
EdgeKind = Literal["ok", "error", "timeout", "branch", "after"]
RouteOutcome = Literal["ok", "error", "timeout", "branch"]

WAITING_KINDS = frozenset({"wait", "pause", "approval", "signal", "child"})
"""Built-in steps that hold their step run open until a person, a timer, a signal or a child
run ends it."""


@dataclass(frozen=True, slots=True)
class StepKey:
    """Which step run of a step: the step, its loop iteration and its map element.

    A step runs once per run unless a route loop brings the run back to it (a new
    ``iteration``) or it maps over a list (one step run per ``item``). Its step runs, jobs and
    the run's ``current_step`` name it by :meth:`key`: ``"draft"``, ``"draft@2"`` (second
    iteration), ``"charge[3]"`` (element 3) or ``"charge@2[3]"``. Step names cannot contain
    ``@`` or ``[``, so a key reads back unambiguously with :meth:`parse`.
    """

    name: str
    iteration: int = 1
    item: int | None = None

    @property
    def key(self) -> str:
        """The stored form."""
        key = self.name if self.iteration == 1 else f"{self.name}@{self.iteration}"
        return key if self.item is None else f"{key}[{self.item}]"

    def element(self, item: int) -> StepKey:
        """The key of element ``item`` of this (map) step run."""
        return StepKey(self.name, self.iteration, item)

    @property
    def whole(self) -> StepKey:
        """The key of the step run this element belongs to (itself when not an element)."""
        return StepKey(self.name, self.iteration)

    @classmethod
    def parse(cls, key: str) -> StepKey:
        """Read a stored key back (a plain step name is iteration 1, no element)."""
        item: int | None = None
        name = key
        if name.endswith("]") and "[" in name:
            name, _, index = name[:-1].rpartition("[")
            item = int(index) if index.isdigit() else None
            if item is None:
                return cls(key)
        iteration = 1
        if "@" in name:
            base, _, count = name.rpartition("@")
            if count.isdigit():
                name, iteration = base, int(count)
        return cls(name, iteration, item)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """A validated retry policy; delays in seconds.

    Attributes:
        max_attempts: Total attempts including the first.
        backoff: ``"none"``, ``"fixed"`` or ``"exponential"``.
        min_delay: First (or fixed) delay.
        max_delay: Cap on exponential delays.
        jitter: Fraction of each delay that may be randomly removed.
    """

    max_attempts: int
    backoff: Literal["none", "fixed", "exponential"] = "none"
    min_delay: float = 0.0
    max_delay: float = 0.0
    jitter: float = 0.0

    def should_retry(self, attempt: int) -> bool:
        """Whether a failure of attempt number ``attempt`` (from 1) may be retried."""
        return attempt < self.max_attempts

    def delay_after(self, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after attempt number ``attempt`` failed.

        Exponential: ``min * 2**(attempt-1)`` capped at ``max``; fixed: ``min``. Jitter then
        removes up to ``jitter`` of the delay, drawn from ``rand``.
        """
        if self.backoff == "none":
            return 0.0
        if self.backoff == "fixed":
            delay = self.min_delay
        else:
            # The exponent is capped: past 2**62 the cap has long been reached anyway.
            delay = min(self.min_delay * 2.0 ** min(attempt - 1, 62), self.max_delay)
        if self.jitter:
            delay -= delay * self.jitter * rand()
        return delay

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "max_attempts": self.max_attempts,
            "backoff": self.backoff,
            "min_delay": self.min_delay,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryPolicy:
    """What may be done after a step completed: replay freely, compensate, or neither.

    Attributes:
        irreversible: The step's effect cannot be undone.
        compensatable: The step takes part in saga rollback (false if irreversible).
        compensation: Qualified name of the compensation callback, if any.
    """

    irreversible: bool = False
    compensatable: bool = True
    compensation: str | None = None

    @property
    def replay(self) -> Literal["allowed", "manual_review_required"]:
        """Whether replaying a run after this step completed needs an explicit override."""
        return "allowed" if self.compensatable else "manual_review_required"

    @property
    def recovery(self) -> Literal["automatic", "manual_intervention"]:
        """How a failure after this step is recovered."""
        return "automatic" if self.compensatable else "manual_intervention"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as persisted on step runs."""
        data: dict[str, Any] = {
            "irreversible": self.irreversible,
            "compensatable": self.compensatable,
            "replay": self.replay,
            "recovery": self.recovery,
        }
        if self.compensation is not None:
            data["compensation"] = {"callback": self.compensation, "status": "available"}
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class StepNode:
    """One step of the graph.

    Attributes:
        name: Step name.
        kind: ``"function"``, ``"log"``, ``"wait"``, ``"pause"``, ``"approval"``,
            ``"signal"`` or ``"child"``.
        description: Human description.
        depends_on: Dependencies (dependency workflows), in declaration order.
        phase: 0 for roots, else 1 + the largest phase among dependencies.
        retry: Retry policy, or ``None`` for a single attempt.
        timeout: Longest seconds an attempt may run, or ``None``.
        output_key: Context key the output is stored under, or ``None`` to merge it.
        transaction: Whether the body runs inside a host-database transaction.
        recovery: Replay and compensation policy.
        options: Built-in options (``message``, ``level``, ``duration``, ``duration_from``,
            ``until_from``; ``signal`` and ``payload`` of a signal step; ``workflow`` and
            ``payload_from`` of a child step), JSON-safe.
        map_over: Run-state key of the list a map step runs over, or ``None``.
        map_as: The parameter receiving a map element.
        max_parallel: Most elements of a map step running at once (``None``: all).
        concurrency: The step's own per-key concurrency limit (``None``: the workflow's).
        body: The function to call (``"function"`` steps).
        compensation: The saga callback, if declared.
        contract: The payload contract of a signal step's signal.
    """

    name: str
    kind: str
    description: str | None = None
    depends_on: tuple[str, ...] = ()
    phase: int = 0
    retry: RetryPolicy | None = None
    timeout: float | None = None
    output_key: str | None = None
    transaction: bool = False
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    map_over: str | None = None
    map_as: str = "item"
    max_parallel: int | None = None
    concurrency: ConcurrencyLimit | None = None
    body: StepBody | None = field(default=None, compare=False, repr=False)
    compensation: StepBody | None = field(default=None, compare=False, repr=False)
    contract: PayloadContract | None = field(default=None, compare=False, repr=False)

    @property
    def is_manual(self) -> bool:
        """Whether the step waits for a person (pause or approval)."""
        return self.kind in ("pause", "approval")

    @property
    def is_waiting(self) -> bool:
        """Whether the step holds its step run open until something outside its run ends it."""
        return self.kind in WAITING_KINDS

    @property
    def is_builtin(self) -> bool:
        """Whether the step has no body: the runtime does all of it when it is claimed."""
        return self.kind != "function"

    @property
    def max_attempts(self) -> int:
        """Total attempts allowed."""
        return self.retry.max_attempts if self.retry else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (code objects appear as qualified names)."""
        data: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.description:
            data["description"] = self.description
        if self.depends_on:
            data["depends_on"] = list(self.depends_on)
            data["phase"] = self.phase
        if self.body is not None:
            data["function"] = self.body.qualname
            data["inputs"] = list(self.body.binder.input_names)
        if self.retry is not None:
            data["retry"] = self.retry.to_dict()
        if self.timeout is not None:
            data["timeout"] = self.timeout
        if self.output_key is not None:
            data["output_key"] = self.output_key
        if self.transaction:
            data["transaction"] = True
        if self.map_over is not None:
            data["map"] = {"over": self.map_over, "as": self.map_as}
            if self.max_parallel is not None:
                data["map"]["max_parallel"] = self.max_parallel
        if self.options:
            data["options"] = dict(self.options)
        data["recovery"] = self.recovery.to_dict()
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """A directed edge: a dependency (``after``) or a route.

    For ``after`` edges ``source`` is the dependency and ``target`` the dependent step. A
    route fires on its ``kind`` of outcome (``ok``, ``error``, ``timeout``, or ``branch`` with
    its ``label``), and only when its ``condition`` holds, if it has one.
    """

    source: str
    target: str
    kind: EdgeKind
    recovery: str | None = None
    label: str | None = None
    condition: Condition | None = None

    @property
    def outcome(self) -> str:
        """The outcome the route fires on: ``ok``, ``error``, ``timeout`` or the label."""
        return self.label if self.kind == "branch" and self.label is not None else self.kind

    def describe(self) -> str:
        """A short human form: ``"large"``, ``"ok when output.total > 1000"``..."""
        text = self.outcome
        if self.condition is not None:
            text = f"{text} when {self.condition.describe()}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        data: dict[str, Any] = {"source": self.source, "target": self.target, "kind": self.kind}
        if self.label is not None:
            data["label"] = self.label
        if self.condition is not None:
            data["when"] = self.condition.to_dict()
        if self.recovery is not None:
            data["recovery"] = self.recovery
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerNode:
    """A compiled trigger with its payload contract."""

    name: str
    kind: Literal["manual", "cron"]
    contract: PayloadContract = field(compare=False)
    expression: str | None = None
    timezone: str | None = None
    idempotency: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        data: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "cron":
            data["expression"] = self.expression
            data["timezone"] = self.timezone
            data["idempotency"] = self.idempotency
        data["payload"] = self.contract.describe()
        return data


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
        taken = frozenset(self.steps)
        ids = {name: _mermaid_id(name, taken) for name in self.steps}
        ids[COMPLETE_TARGET] = COMPLETE_TARGET
        lines = ["flowchart TD"]
        lines.extend(f"    {_mermaid_node(node, ids[node.name])}" for node in self.steps.values())
        if any(edge.target == COMPLETE_TARGET for edge in self.edges):
            lines.append(f'    {COMPLETE_TARGET}(("complete"))')
        for edge in self.edges:
            source, target = ids[edge.source], ids[edge.target]
            if edge.kind == "after":
                lines.append(f"    {source} --> {target}")
                continue
            label = _route_label(edge, approval=self.steps[edge.source].kind == "approval")
            if edge.kind in ("error", "timeout"):
                lines.append(f'    {source} -.->|"{_mermaid_text(label)}"| {target}')
            elif edge.condition is None:
                lines.append(f"    {source} -->|{label}| {target}")
            else:
                lines.append(f'    {source} -->|"{_mermaid_text(label)}"| {target}')
        return "\n".join(lines) + "\n"


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


def _route_label(edge: Edge, *, approval: bool) -> str:
    outcome = edge.outcome
    if approval and edge.kind in ("ok", "error"):
        outcome = "approved" if edge.kind == "ok" else "rejected"
    if edge.condition is not None:
        outcome = f"{outcome}: {edge.condition.describe()}"
    if edge.recovery:
        outcome = f"{outcome}: {edge.recovery}"
    return outcome


def _mermaid_text(text: str) -> str:
    """``text`` made safe inside a quoted Mermaid label."""
    return text.replace('"', "#quot;")


# Mermaid keywords that break a flowchart when used as a node id.
_MERMAID_RESERVED = frozenset({"end", "graph", "subgraph", "flowchart", "style", "class", "click"})


def _mermaid_id(name: str, taken: frozenset[str] = frozenset()) -> str:
    """The node id of ``name``: reserved words get a prefix that no other step name has."""
    if name.lower() not in _MERMAID_RESERVED:
        return name
    candidate = f"step_{name}"
    while candidate in taken:
        candidate = f"_{candidate}"
    return candidate


def _wait_text(options: Mapping[str, Any]) -> str:
    if options.get("duration") is not None:
        return f"{options['duration']:g}s"
    if options.get("duration_from") is not None:
        return f"seconds from {options['duration_from']}"
    return f"until {options.get('until_from')}"


def _mermaid_node(node: StepNode, node_id: str) -> str:
    label = "<br/>".join(_mermaid_label_lines(node))
    if node.kind == "log":
        return f'{node_id}[/"{label}"/]'
    if node.kind == "wait":
        return f'{node_id}(["{label}"])'
    if node.kind == "pause":
        return f'{node_id}{{{{"{label}"}}}}'
    if node.kind == "approval":
        return f'{node_id}{{"{label}"}}'
    if node.kind == "signal":
        return f'{node_id}>"{label}"]'
    if node.kind == "child":
        return f'{node_id}[["{label}"]]'
    return f'{node_id}["{label}"]'


def _mermaid_label_lines(node: StepNode) -> list[str]:
    """The step name, then the options an operator should see on the picture."""
    if node.kind == "wait":
        lines = [f"{node.name} (wait {_wait_text(node.options)})"]
    elif node.kind == "function":
        lines = [node.name]
    elif node.kind == "signal":
        lines = [f"{node.name} (signal {node.options.get('signal')})"]
    elif node.kind == "child":
        lines = [f"{node.name} (child {node.options.get('workflow')})"]
    else:
        lines = [f"{node.name} ({node.kind})"]
    if node.map_over is not None:
        limit = f", {node.max_parallel} at a time" if node.max_parallel else ""
        lines.append(f"map over {node.map_over}{limit}")
    if node.is_waiting and node.timeout is not None:
        lines.append(f"timeout {node.timeout:g}s")
    if node.retry is not None and node.retry.max_attempts > 1:
        lines.append(f"retry: {node.retry.max_attempts} attempts")
    if node.compensation is not None:
        lines.append(f"compensate: {node.compensation.qualname.rsplit('.', 1)[-1]}")
    if node.recovery.irreversible:
        lines.append("irreversible")
    elif not node.recovery.compensatable:
        lines.append("not compensatable")
    if node.transaction:
        lines.append("transaction")
    return lines
