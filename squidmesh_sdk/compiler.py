"""Turn a declared :class:`~squidmesh_sdk.definition.Workflow` into a ``WorkflowDefinition``.

:func:`compile` checks everything, collects every problem, and raises one
:class:`~squidmesh_sdk.errors.DefinitionError` listing them; nothing is half-compiled.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel

from squidmesh_sdk import cron_expressions, errors
from squidmesh_sdk.contracts import PayloadContract, StepBody, build_step_body, check_field_default
from squidmesh_sdk.definition.outcomes import Complete
from squidmesh_sdk.definition.steps import BUILTIN_KINDS, LogLevel, StepHandle, StepRef, StepSpec
from squidmesh_sdk.definition.triggers import CronIdempotency, TriggerSpec
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import (
    COMPLETE_TARGET,
    Edge,
    RecoveryPolicy,
    RetryPolicy,
    StepNode,
    TriggerNode,
    WorkflowDefinition,
)

__all__ = ["compile"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_LOG_LEVELS = frozenset(typing.get_args(LogLevel))
_IDEMPOTENCY = frozenset(typing.get_args(CronIdempotency))


@dataclass
class _Issues:
    """Collects problems in declaration order."""

    items: list[errors.Issue] = field(default_factory=list)

    def add(self, code: str, message: str, step: str | None = None) -> None:
        self.items.append(errors.Issue(code=code, step=step, message=message))


def compile(workflow: Workflow) -> WorkflowDefinition:
    """Validate ``workflow`` and return its immutable definition graph.

    Raises:
        DefinitionError: listing every problem found (``.issues``), when there is any.
    """
    issues = _Issues()
    if not isinstance(workflow.name, str) or not _NAME.match(workflow.name):
        issues.add("invalid_name", f"workflow name {workflow.name!r} must match {_NAME.pattern}")
    triggers = _compile_triggers(workflow.triggers, issues)
    specs = [handle.spec for handle in workflow.steps]
    names = _check_step_names(workflow, specs, issues)
    shape: Literal["transition", "dependency"] = (
        "dependency" if any(spec.after is not None for spec in specs) else "transition"
    )
    nodes: dict[str, StepNode] = {}
    for spec in specs:
        node = _compile_step(spec, shape, issues)
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
        edges, entry, nodes = _compile_dependencies(workflow, specs, names, nodes, issues)
        initial: str | None = None
    else:
        edges, entry = _compile_routes(workflow, specs, names, issues)
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
    )


# -- triggers ------------------------------------------------------------------------------


def _compile_triggers(specs: Iterable[TriggerSpec], issues: _Issues) -> dict[str, TriggerNode]:
    nodes: dict[str, TriggerNode] = {}
    field_types: dict[str, tuple[str, Any]] = {}
    specs = list(specs)
    if not specs:
        issues.add("no_triggers", "a workflow needs at least one trigger (manual() or cron())")
    for spec in specs:
        if not isinstance(spec, TriggerSpec):
            issues.add("invalid_trigger", f"{spec!r} is not a trigger; use manual() or cron()")
            continue
        name = spec.name
        if not isinstance(name, str) or not _NAME.match(name):
            issues.add("invalid_trigger_name", f"trigger name {name!r} must match {_NAME.pattern}")
        if name in nodes:
            issues.add("duplicate_trigger", f"trigger {name!r} is declared more than once")
            continue
        if spec.kind not in ("manual", "cron"):
            issues.add("invalid_trigger_kind", f"trigger {name!r} has unknown kind {spec.kind!r}")
            continue
        model = spec.payload
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            issues.add(
                "invalid_payload_model",
                f"trigger {name!r}: payload must be a pydantic BaseModel subclass, got {model!r}",
            )
            continue
        _check_payload(name, spec, model, field_types, issues)
        if spec.kind == "cron":
            _check_cron(spec, model, issues)
        elif spec.idempotency is not None:
            issues.add(
                "invalid_idempotency",
                f"trigger {name!r}: idempotency only applies to cron triggers",
            )
        nodes[name] = TriggerNode(
            name=name,
            kind=spec.kind,
            contract=PayloadContract(name, model),
            expression=spec.expression,
            timezone=spec.timezone,
            idempotency=spec.idempotency,
        )
    return nodes


def _check_payload(
    trigger: str,
    spec: TriggerSpec,
    model: type[BaseModel] | None,
    field_types: dict[str, tuple[str, Any]],
    issues: _Issues,
) -> None:
    if model is None:
        return
    for field_name in model.model_fields:
        problem = check_field_default(model, field_name)
        if problem is not None:
            issues.add(
                "invalid_payload_default",
                f"trigger {trigger!r}: default of payload field {field_name!r} fails its own "
                f"type: {problem}",
            )
    for key, annotation in PayloadContract(trigger, model).field_types().items():
        seen = field_types.setdefault(key, (trigger, annotation))
        if seen[1] != annotation:
            issues.add(
                "conflicting_payload_field",
                f"payload field {key!r} is {seen[1]!r} in trigger {seen[0]!r} but "
                f"{annotation!r} in trigger {trigger!r}; a shared field needs one type",
            )
    if spec.kind == "cron":
        required = [n for n, info in model.model_fields.items() if info.is_required()]
        if required:
            issues.add(
                "cron_payload_requires_input",
                f"cron trigger {trigger!r}: payload fields {', '.join(required)} have no default, "
                "but a cron run has no caller to supply them",
            )
            return
        try:  # the exact payload a cron run will get: field and model validators included
            PayloadContract(trigger, model).validate({})
        except errors.InvalidPayload as exc:
            issues.add(
                "invalid_payload_default",
                f"cron trigger {trigger!r}: the payload built from defaults is rejected: {exc}",
            )


def _check_cron(spec: TriggerSpec, model: type[BaseModel] | None, issues: _Issues) -> None:
    problem = cron_expressions.expression_problem(spec.expression)
    if problem is not None:
        issues.add(
            "invalid_cron_expression",
            f"cron trigger {spec.name!r}: expression {spec.expression!r} {problem}"
            if problem.startswith("must")
            else f"cron trigger {spec.name!r}: invalid expression {spec.expression!r}: {problem}",
        )
    problem = cron_expressions.timezone_problem(spec.timezone)
    if problem is not None:
        issues.add(
            "invalid_timezone", f"cron trigger {spec.name!r}: timezone {spec.timezone!r} {problem}"
        )
    if spec.idempotency is not None and spec.idempotency not in _IDEMPOTENCY:
        issues.add(
            "invalid_idempotency",
            f"cron trigger {spec.name!r}: idempotency {spec.idempotency!r} must be one of "
            f"{', '.join(sorted(_IDEMPOTENCY))} or None",
        )


# -- steps ---------------------------------------------------------------------------------


def _check_step_names(workflow: Workflow, specs: list[StepSpec], issues: _Issues) -> set[str]:
    if not specs:
        issues.add("no_steps", "a workflow needs at least one step")
    seen: set[str] = set()
    for spec in specs:
        if spec.name == "<lambda>":
            issues.add(
                "invalid_step_name",
                "a lambda step needs a name: wf.step(name=...)(lambda: ...)",
                step=spec.name,
            )
        elif not isinstance(spec.name, str) or not _NAME.match(spec.name):
            issues.add(
                "invalid_step_name",
                f"step name {spec.name!r} must match {_NAME.pattern}",
                step=str(spec.name),
            )
        elif spec.name == COMPLETE_TARGET:
            issues.add("invalid_step_name", f"{COMPLETE_TARGET!r} is reserved", step=spec.name)
        if spec.name in seen:
            issues.add(
                "duplicate_step", f"step {spec.name!r} is declared more than once", step=spec.name
            )
        seen.add(spec.name)
    return seen


def _compile_step(spec: StepSpec, shape: str, issues: _Issues) -> StepNode | None:
    start = len(issues.items)
    name = spec.name
    body: StepBody | None = None
    compensation: StepBody | None = None
    options: dict[str, Any] = {}
    if spec.kind == "function":
        if not callable(spec.fn):
            issues.add("missing_body", f"step {name!r} has no callable body", step=name)

        else:
            body, problems = build_step_body(name, spec.fn)
            for problem in problems:
                issues.add("invalid_step_body", f"step {name!r}: body {problem}", step=name)
    elif spec.kind in BUILTIN_KINDS:
        options = _check_builtin(spec, shape, issues)
    else:
        issues.add("invalid_step_kind", f"step {name!r} has unknown kind {spec.kind!r}", step=name)
    retry = _compile_retry(spec, issues)
    timeout = None
    if spec.timeout is not None:
        timeout = _seconds(spec.timeout)
        if timeout is None or timeout <= 0:
            issues.add(
                "invalid_timeout", f"step {name!r}: timeout must be > 0, got {spec.timeout!r}", name
            )
    if spec.output is not None and (not isinstance(spec.output, str) or not spec.output):
        issues.add(
            "invalid_output_key",
            f"step {name!r}: output must be a non-empty string, got {spec.output!r}",
            step=name,
        )
    compensatable = _check_recovery_flags(spec, issues)
    if spec.compensate is not None and spec.kind == "function" and compensatable:
        if callable(spec.compensate):
            compensation, problems = build_step_body(name, spec.compensate)
            for problem in problems:
                issues.add(
                    "invalid_compensate", f"step {name!r}: compensate callback {problem}", name
                )
        else:
            issues.add("invalid_compensate", f"step {name!r}: compensate must be callable", name)
    if len(issues.items) > start:
        return None
    return StepNode(
        name=name,
        kind=spec.kind,
        description=spec.description,
        retry=retry,
        timeout=timeout,
        output_key=spec.output,
        transaction=spec.transaction,
        recovery=RecoveryPolicy(
            irreversible=spec.irreversible,
            compensatable=compensatable,
            compensation=compensation.qualname if compensation else None,
        ),
        options=MappingProxyType(options),
        body=body,
        compensation=compensation,
    )


def _check_builtin(spec: StepSpec, shape: str, issues: _Issues) -> dict[str, Any]:
    name, kind = spec.name, spec.kind
    if spec.fn is not None:
        issues.add("builtin_has_body", f"built-in {kind} step {name!r} cannot have a body", name)
    if spec.compensate is not None:
        issues.add(
            "compensate_on_builtin",
            f"built-in {kind} step {name!r} cannot declare a compensate callback",
            step=name,
        )
    if spec.transaction:
        issues.add(
            "transaction_on_builtin",
            f"built-in {kind} step {name!r} has no body to run in a transaction",
            step=name,
        )
    if kind in ("pause", "approval") and shape == "dependency":
        issues.add(
            "manual_step_in_dependency_workflow",
            f"{kind} step {name!r}: dependency workflows cannot pause (other branches would "
            "keep running past the gate); use a transition workflow",
            step=name,
        )
    options: dict[str, Any] = {}
    if kind == "log":
        if not isinstance(spec.message, str) or not spec.message.strip():
            issues.add("invalid_log_message", f"log step {name!r} needs a non-empty message", name)
        level = spec.level or "info"
        if level not in _LOG_LEVELS:
            issues.add(
                "invalid_log_level",
                f"log step {name!r}: level {spec.level!r} must be one of "
                f"{', '.join(sorted(_LOG_LEVELS))}",
                step=name,
            )
        options = {"message": spec.message, "level": level}
    elif kind == "wait":
        seconds = _seconds(spec.duration) if spec.duration is not None else None
        if seconds is None or seconds <= 0:
            issues.add(
                "invalid_wait_duration",
                f"wait step {name!r}: duration must be > 0 seconds, got {spec.duration!r}",
                step=name,
            )
        options = {"duration": seconds}
    return options


def _compile_retry(spec: StepSpec, issues: _Issues) -> RetryPolicy | None:
    retry = spec.retry
    if retry is None:
        return None
    name = spec.name
    problems: list[str] = []
    if isinstance(retry.max_attempts, bool) or not isinstance(retry.max_attempts, int):
        problems.append(f"max_attempts must be an integer, got {retry.max_attempts!r}")
    elif retry.max_attempts < 1:
        problems.append(f"max_attempts must be >= 1, got {retry.max_attempts}")
    backoff = retry.backoff
    low = high = 0.0
    jitter = 0.0
    if backoff is not None:
        low_s, high_s = _seconds(backoff.min), _seconds(backoff.max)
        if low_s is None or low_s <= 0:
            problems.append(f"backoff min must be > 0 seconds, got {backoff.min!r}")
        if high_s is None or high_s <= 0:
            problems.append(f"backoff max must be > 0 seconds, got {backoff.max!r}")
        if low_s is not None and high_s is not None and low_s > high_s:
            problems.append(f"backoff min ({low_s:g}s) is greater than max ({high_s:g}s)")
        if not isinstance(backoff.jitter, int | float) or not 0 <= backoff.jitter <= 1:
            problems.append(f"jitter must be between 0 and 1, got {backoff.jitter!r}")
        if backoff.kind not in ("fixed", "exponential"):
            problems.append(f"backoff kind must be 'fixed' or 'exponential', got {backoff.kind!r}")
        low, high, jitter = low_s or 0.0, high_s or 0.0, float(backoff.jitter)
    for problem in problems:
        issues.add("invalid_retry", f"step {name!r}: retry {problem}", step=name)
    if problems:
        return None
    return RetryPolicy(
        max_attempts=retry.max_attempts,
        backoff=backoff.kind if backoff is not None else "none",
        min_delay=low,
        max_delay=high,
        jitter=jitter,
    )


def _check_recovery_flags(spec: StepSpec, issues: _Issues) -> bool:
    """Validate irreversible / compensatable / compensate; return the effective flag."""
    name = spec.name
    if not isinstance(spec.irreversible, bool):
        issues.add("invalid_flag", f"step {name!r}: irreversible must be a bool", step=name)
        return False
    if spec.compensatable is not None and not isinstance(spec.compensatable, bool):
        issues.add("invalid_flag", f"step {name!r}: compensatable must be a bool", step=name)
        return False
    if spec.irreversible and spec.compensatable is True:
        issues.add(
            "irreversible_and_compensatable",
            f"step {name!r} cannot be both irreversible and compensatable",
            step=name,
        )
    compensatable = not spec.irreversible and spec.compensatable is not False
    if spec.compensate is not None and not compensatable and spec.kind == "function":
        issues.add(
            "compensate_not_allowed",
            f"step {name!r} declares a compensate callback but is irreversible or "
            "compensatable=False",
            step=name,
        )
    return compensatable


# -- shapes --------------------------------------------------------------------------------


def _resolve(
    workflow: Workflow,
    ref: StepRef,
    names: set[str],
    issues: _Issues,
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


def _compile_dependencies(
    workflow: Workflow,
    specs: list[StepSpec],
    names: set[str],
    nodes: dict[str, StepNode],
    issues: _Issues,
) -> tuple[list[Edge], list[str], dict[str, StepNode]]:
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


def _phases(deps: dict[str, tuple[str, ...]], issues: _Issues) -> dict[str, int] | None:
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


def _compile_routes(
    workflow: Workflow, specs: list[StepSpec], names: set[str], issues: _Issues
) -> tuple[list[Edge], list[str]]:
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


def _seconds(value: object) -> float | None:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
