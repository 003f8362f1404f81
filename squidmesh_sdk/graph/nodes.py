"""The nodes and edges of a compiled workflow graph: steps, their keys and policies, routes.

Everything here is frozen; :mod:`squidmesh_sdk.graph.definition` puts them together.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from squidmesh_sdk.contracts import PayloadContract, StepBody
from squidmesh_sdk.definition.conditions import Condition
from squidmesh_sdk.definition.flow import ConcurrencyLimit
from squidmesh_sdk.frozen import fast_init

__all__ = [
    "COMPLETE_TARGET",
    "DEADLINE_STEP",
    "WAITING_KINDS",
    "Edge",
    "EdgeKind",
    "RecoveryPolicy",
    "RetryPolicy",
    "RouteOutcome",
    "Shape",
    "StepKey",
    "StepNode",
    "TriggerNode",
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


@fast_init
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

    @staticmethod
    def parse(key: str) -> StepKey:
        """Read a stored key back (a plain step name is iteration 1, no element)."""
        return _parse_key(key)


@functools.lru_cache(maxsize=4096)  # a delivery parses its step's key several times
def _parse_key(key: str) -> StepKey:
    item: int | None = None
    name = key
    if name.endswith("]") and "[" in name:
        name, _, index = name[:-1].rpartition("[")
        item = int(index) if index.isdigit() else None
        if item is None:
            return StepKey(key)
    iteration = 1
    if "@" in name:
        base, _, count = name.rpartition("@")
        if count.isdigit():
            name, iteration = base, int(count)
    return StepKey(name, iteration, item)


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
