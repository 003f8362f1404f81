"""Choosing the route a step's outcome takes, and saying why.

Routes of one outcome are tried in declaration order; the first whose condition holds fires,
else the one without a condition. A step whose outcome has no route ends its path. The choice
is recorded in run history (a ``route_taken`` audit event) whenever there was one to make: a
condition, a branch label, an error or a timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from squidmesh_sdk.definition.conditions import evaluate
from squidmesh_sdk.frozen import fast_init
from squidmesh_sdk.graph import Edge, WorkflowDefinition

__all__ = ["RouteChoice", "choose_route"]


@fast_init
@dataclass(frozen=True, slots=True)
class RouteChoice:
    """The route a step's outcome takes.

    Attributes:
        outcome: ``ok``, ``error``, ``timeout`` or the branch label returned.
        edge: The route that fires, or ``None`` when the outcome has no route (the path ends).
        unknown_label: The step returned a branch label that no route names.
        why: What history records: the outcome, each condition tried with the value seen, and
            the route taken (empty when there was nothing to choose).
    """

    outcome: str
    edge: Edge | None
    unknown_label: bool = False
    why: dict[str, Any] = field(default_factory=dict)


def choose_route(
    definition: WorkflowDefinition,
    step: str,
    outcome: str,
    *,
    output: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> RouteChoice:
    """The route ``step``'s ``outcome`` takes, evaluating conditions over the given values."""
    routes = definition.routes_from(step, outcome)
    if not routes:
        unknown = outcome not in ("ok", "error", "timeout")
        why: dict[str, Any] = {"outcome": outcome, "labels": list(definition.branch_labels(step))}
        return RouteChoice(outcome, None, unknown_label=unknown, why=why if unknown else {})
    if len(routes) == 1 and routes[0].condition is None:
        chosen = routes[0]
        notable = outcome != "ok"
        plain: dict[str, Any] = {"outcome": outcome, "target": chosen.target} if notable else {}
        return RouteChoice(outcome, chosen, why=plain)
    scope = {"output": output or {}, "context": context or {}, "payload": payload or {}}
    tried: list[dict[str, Any]] = []
    for route in routes:
        if route.condition is None:
            continue
        matched, observed = evaluate(route.condition, scope)
        tried.append({**route.condition.to_dict(), "observed": observed, "matched": matched})
        if matched:
            why = {"outcome": outcome, "conditions": tried, "target": route.target}
            return RouteChoice(outcome, route, why=why)
    default = next(route for route in routes if route.condition is None)
    why = {"outcome": outcome, "conditions": tried, "default": True, "target": default.target}
    return RouteChoice(outcome, default, why=why)
