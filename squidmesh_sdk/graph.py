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

__all__ = [
    "COMPLETE_TARGET",
    "Edge",
    "RecoveryPolicy",
    "RetryPolicy",
    "StepNode",
    "TriggerNode",
    "WorkflowDefinition",
]

COMPLETE_TARGET = "__complete__"
"""Route target name meaning "complete the run" (the graph form of ``COMPLETE``)."""

Shape = Literal["transition", "dependency"]
EdgeKind = Literal["ok", "error", "after"]


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
        kind: ``"function"``, ``"log"``, ``"wait"``, ``"pause"`` or ``"approval"``.
        description: Human description.
        depends_on: Dependencies (dependency workflows), in declaration order.
        phase: 0 for roots, else 1 + the largest phase among dependencies.
        retry: Retry policy, or ``None`` for a single attempt.
        timeout: Longest seconds an attempt may run, or ``None``.
        output_key: Context key the output is stored under, or ``None`` to merge it.
        transaction: Whether the body runs inside a host-database transaction.
        recovery: Replay and compensation policy.
        options: Built-in options (``message``, ``level``, ``duration``), JSON-safe.
        body: The function to call (``"function"`` steps).
        compensation: The saga callback, if declared.
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
    body: StepBody | None = field(default=None, compare=False, repr=False)
    compensation: StepBody | None = field(default=None, compare=False, repr=False)

    @property
    def is_manual(self) -> bool:
        """Whether the step pauses the run for a person (pause or approval)."""
        return self.kind in ("pause", "approval")

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
        if self.options:
            data["options"] = dict(self.options)
        data["recovery"] = self.recovery.to_dict()
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """A directed edge: a dependency (``after``) or a route (``ok`` / ``error``).

    For ``after`` edges ``source`` is the dependency and ``target`` the dependent step.
    """

    source: str
    target: str
    kind: EdgeKind
    recovery: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        data: dict[str, Any] = {"source": self.source, "target": self.target, "kind": self.kind}
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
        shape: ``"transition"`` (routes) or ``"dependency"`` (``after`` graph).
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
    fingerprint: str = field(init=False, default="")
    version: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", MappingProxyType(dict(self.steps)))
        object.__setattr__(self, "triggers", MappingProxyType(dict(self.triggers)))
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

    def route(self, step: str, outcome: Literal["ok", "error"]) -> str | None:
        """Target of ``step``'s ``outcome`` route (a step name or ``COMPLETE_TARGET``)."""
        for edge in self.edges:
            if edge.source == step and edge.kind == outcome:
                return edge.target
        return None

    def route_edge(self, step: str, outcome: Literal["ok", "error"]) -> Edge | None:
        """The ``outcome`` route edge leaving ``step``, with its recovery label."""
        return next((e for e in self.edges if e.source == step and e.kind == outcome), None)

    def dependents(self, step: str) -> tuple[str, ...]:
        """Steps that list ``step`` in ``after`` (dependency workflows)."""
        return tuple(e.target for e in self.edges if e.kind == "after" and e.source == step)

    def _body_dict(self) -> dict[str, Any]:
        return {
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form with a stable key and list order, plus the fingerprint."""
        return {**self._body_dict(), "version": self.version, "fingerprint": self.fingerprint}

    def to_json(self, *, indent: int | None = 2) -> str:
        """The :meth:`to_dict` form as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart`` of the graph.

        Dependency edges are plain arrows; ``ok`` routes are labelled arrows; ``error`` routes
        are dotted, labelled with their recovery marker when they have one. An approval's
        routes read ``approved`` and ``rejected``.
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
            approval = self.steps[edge.source].kind == "approval"
            if edge.kind == "after":
                lines.append(f"    {source} --> {target}")
            elif edge.kind == "ok":
                lines.append(f"    {source} -->|{'approved' if approval else 'ok'}| {target}")
            else:
                label = "rejected" if approval else "error"
                if edge.recovery:
                    label = f"{label}: {edge.recovery}"
                lines.append(f'    {source} -.->|"{label}"| {target}')
        return "\n".join(lines) + "\n"


def _without_descriptions(data: Any) -> Any:
    """Drop human descriptions: rewording a docstring is not a new workflow version."""
    if isinstance(data, dict):
        return {k: _without_descriptions(v) for k, v in data.items() if k != "description"}
    if isinstance(data, list):
        return [_without_descriptions(item) for item in data]
    return data


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
    return f'{node_id}["{label}"]'


def _mermaid_label_lines(node: StepNode) -> list[str]:
    """The step name, then the options an operator should see on the picture."""
    if node.kind == "wait":
        lines = [f"{node.name} (wait {node.options['duration']:g}s)"]
    elif node.kind == "function":
        lines = [node.name]
    else:
        lines = [f"{node.name} ({node.kind})"]
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
