"""Compile steps one by one: bodies, built-in options, retry and recovery policies."""

from __future__ import annotations

import dataclasses
import math
import typing
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from squidmesh_sdk.compiler.issues import NAME, Issues
from squidmesh_sdk.contracts import PayloadContract, StepBody, build_step_body
from squidmesh_sdk.definition.flow import concurrency_limit_problems
from squidmesh_sdk.definition.options import Backoff, Retry
from squidmesh_sdk.definition.steps import BUILTIN_KINDS, LogLevel, StepSpec
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.graph import (
    COMPLETE_TARGET,
    RecoveryPolicy,
    RetryPolicy,
    StepNode,
)

_LOG_LEVELS = frozenset(typing.get_args(LogLevel))


def check_step_names(workflow: Workflow, specs: list[StepSpec], issues: Issues) -> set[str]:
    """Report missing, invalid, reserved and duplicate step names; return the names."""
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
        elif not isinstance(spec.name, str) or not NAME.match(spec.name):
            issues.add(
                "invalid_step_name",
                f"step name {spec.name!r} must match {NAME.pattern}",
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


def compile_step(spec: StepSpec, issues: Issues) -> StepNode | None:
    """Validate one step spec; return its node, or ``None`` when it has problems."""
    start = len(issues.items)
    name = spec.name
    body: StepBody | None = None
    compensation: StepBody | None = None
    contract: PayloadContract | None = None
    options: dict[str, Any] = {}
    if spec.kind == "function":
        if not callable(spec.fn):
            issues.add("missing_body", f"step {name!r} has no callable body", step=name)

        else:
            body, problems = build_step_body(name, spec.fn)
            for problem in problems:
                issues.add("invalid_step_body", f"step {name!r}: body {problem}", step=name)
        if spec.on_parent_close != "cancel":
            issues.add(
                "invalid_parent_close",
                f"step {name!r} starts no child: it takes no on_parent_close",
                step=name,
            )
    elif spec.kind in BUILTIN_KINDS:
        options = _check_builtin(spec, issues)
        if spec.kind == "signal":
            contract = _signal_contract(spec, issues)
            if contract is not None:
                options["payload"] = contract.describe()
    else:
        issues.add("invalid_step_kind", f"step {name!r} has unknown kind {spec.kind!r}", step=name)
    retry = _compile_retry(spec, issues)
    timeout = None
    if spec.timeout is not None:
        timeout = seconds(spec.timeout)
        if timeout is None or timeout <= 0:
            issues.add(
                "invalid_timeout",
                f"step {name!r}: timeout must be > 0 ({LONGEST}), got {spec.timeout!r}",
                name,
            )
        elif spec.kind in ("log", "wait"):
            issues.add(
                "invalid_timeout",
                f"{spec.kind} step {name!r} takes no timeout (it does not wait for anyone)",
                step=name,
            )
    _check_map(spec, body, issues)
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
    if spec.concurrency is not None:
        for problem in concurrency_limit_problems(spec.concurrency):
            issues.add("invalid_concurrency", f"step {name!r}: {problem}", step=name)
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
        map_over=spec.map_over,
        map_as=spec.map_as,
        max_parallel=spec.max_parallel,
        concurrency=spec.concurrency,
        body=body,
        compensation=compensation,
        contract=contract,
    )


def check_signals(nodes: dict[str, StepNode], issues: Issues) -> None:
    """Steps that wait for one signal must agree on its payload model."""
    models: dict[str, tuple[str, object]] = {}
    for node in nodes.values():
        if node.kind != "signal" or node.contract is None:
            continue
        name = str(node.options.get("signal"))
        first = models.setdefault(name, (node.name, node.contract.model))
        if first[1] is not node.contract.model:
            issues.add(
                "conflicting_signal_payload",
                f"signal steps {first[0]!r} and {node.name!r} wait for signal {name!r} with "
                "different payload models: a signal is validated once, when it is sent",
                step=node.name,
            )


_PARENT_CLOSE = ("cancel", "abandon")


def _child_options(spec: StepSpec, issues: Issues) -> dict[str, Any]:
    name = spec.name
    if not isinstance(spec.workflow, str) or not NAME.match(spec.workflow):
        issues.add(
            "invalid_child_workflow",
            f"child step {name!r}: workflow must be a workflow or its name, got {spec.workflow!r}",
            step=name,
        )
    if spec.trigger_name is not None and (
        not isinstance(spec.trigger_name, str) or not NAME.match(spec.trigger_name)
    ):
        issues.add(
            "invalid_child_workflow",
            f"child step {name!r}: trigger must be a trigger name, got {spec.trigger_name!r}",
            step=name,
        )
    mapping = spec.payload_from if spec.payload_from is not None else {}
    fields: dict[str, str] = {}
    if not isinstance(mapping, dict):
        issues.add(
            "invalid_child_payload",
            f"child step {name!r}: payload_from must be a mapping of payload field to run-state "
            f"key, got {mapping!r}",
            step=name,
        )
        mapping = {}
    for field, path in mapping.items():
        if (
            not isinstance(field, str)
            or not field
            or not isinstance(path, str)
            or not all(NAME.match(part) for part in path.split("."))
        ):
            issues.add(
                "invalid_child_payload",
                f"child step {name!r}: payload_from maps a payload field to a run-state key "
                f"such as 'order.id', got {field!r}: {path!r}",
                step=name,
            )
        else:
            fields[field] = path
    options: dict[str, Any] = {"workflow": spec.workflow, "payload_from": fields}
    if spec.trigger_name is not None:
        options["trigger"] = spec.trigger_name
    if spec.on_parent_close not in _PARENT_CLOSE:
        issues.add(
            "invalid_parent_close",
            f"child step {name!r}: on_parent_close must be one of "
            f"{', '.join(map(repr, _PARENT_CLOSE))}, got {spec.on_parent_close!r}",
            step=name,
        )
    elif spec.on_parent_close != "cancel":
        # Only when not the default: workflows declared before the option keep their
        # fingerprint (and so their derived version).
        options["on_parent_close"] = spec.on_parent_close
    return options


def _signal_contract(spec: StepSpec, issues: Issues) -> PayloadContract | None:
    """The payload contract of a signal step's signal (its name was checked already)."""
    model = spec.payload
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        issues.add(
            "invalid_signal_payload",
            f"signal step {spec.name!r}: payload must be a pydantic BaseModel subclass or None, "
            f"got {model!r}",
            step=spec.name,
        )
        return None
    return PayloadContract(str(spec.signal), model, subject="signal")


def _check_map(spec: StepSpec, body: StepBody | None, issues: Issues) -> None:
    name = spec.name
    if spec.map_over is None:
        if spec.max_parallel is not None:
            issues.add("invalid_map", f"step {name!r}: max_parallel needs map_over=", step=name)
        return
    if spec.kind != "function":
        issues.add("invalid_map", f"built-in {spec.kind} step {name!r} cannot map", step=name)
        return
    if not isinstance(spec.map_over, str) or not all(
        NAME.match(part) for part in spec.map_over.split(".")
    ):
        issues.add(
            "invalid_map",
            f"step {name!r}: map_over must be a run-state key such as 'lines' or "
            f"'order.lines', got {spec.map_over!r}",
            step=name,
        )
    if spec.max_parallel is not None and (
        isinstance(spec.max_parallel, bool)
        or not isinstance(spec.max_parallel, int)
        or spec.max_parallel < 1
    ):
        issues.add(
            "invalid_map",
            f"step {name!r}: max_parallel must be an integer >= 1, got {spec.max_parallel!r}",
            step=name,
        )
    if body is not None and spec.map_as not in body.binder.input_names:
        issues.add(
            "invalid_map",
            f"step {name!r}: its body has no parameter {spec.map_as!r} to receive each element "
            f"of {spec.map_over!r}; add one or set map_as= to the parameter's name",
            step=name,
        )


def _check_builtin(spec: StepSpec, issues: Issues) -> dict[str, Any]:
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
        options = _wait_options(spec, issues)
    elif kind == "signal":
        if not isinstance(spec.signal, str) or not NAME.match(spec.signal):
            issues.add(
                "invalid_signal_name",
                f"signal step {name!r}: the signal name {spec.signal!r} must match {NAME.pattern}",
                step=name,
            )
        options = {"signal": spec.signal}
    elif kind == "child":
        options = _child_options(spec, issues)
    if kind != "child" and (spec.workflow is not None or spec.payload_from is not None):
        issues.add(
            "invalid_child_workflow",
            f"{kind} step {name!r} takes no workflow or payload_from",
            step=name,
        )
    if kind != "child" and spec.on_parent_close != "cancel":
        issues.add(
            "invalid_parent_close",
            f"{kind} step {name!r} starts no child: it takes no on_parent_close",
            step=name,
        )
    if kind != "signal" and spec.payload is not None:
        issues.add(
            "invalid_signal_payload", f"{kind} step {name!r} takes no payload model", step=name
        )
    return options


def _wait_options(spec: StepSpec, issues: Issues) -> dict[str, Any]:
    name = spec.name
    given = [
        key
        for key, value in (
            ("duration", spec.duration),
            ("duration_from", spec.duration_from),
            ("until_from", spec.until_from),
        )
        if value is not None
    ]
    if len(given) != 1:
        issues.add(
            "invalid_wait_duration",
            f"wait step {name!r}: give exactly one of duration=, duration_from= or until_from=, "
            f"got {', '.join(given) or 'none'}",
            step=name,
        )
        return {}
    if spec.duration is not None:
        length = seconds(spec.duration)
        if length is None or length <= 0:
            issues.add(
                "invalid_wait_duration",
                f"wait step {name!r}: duration must be > 0 seconds ({LONGEST}), got "
                f"{spec.duration!r}",
                step=name,
            )
        return {"duration": length}
    key, path = given[0], spec.duration_from if given[0] == "duration_from" else spec.until_from
    if not isinstance(path, str) or not all(NAME.match(part) for part in path.split(".")):
        issues.add(
            "invalid_wait_duration",
            f"wait step {name!r}: {key} must be a run-state key such as 'delay' or "
            f"'order.ship_at', got {path!r}",
            step=name,
        )
    return {key: path}


def _compile_retry(spec: StepSpec, issues: Issues) -> RetryPolicy | None:
    retry = spec.retry
    if retry is None:
        return None
    name = spec.name
    if not isinstance(retry, Retry):
        issues.add(
            "invalid_retry",
            f"step {name!r}: retry takes Retry(max_attempts=..., backoff=...), got {retry!r}",
            step=name,
        )
        return None
    problems: list[str] = []
    if retry.backoff is not None and not isinstance(retry.backoff, Backoff):
        problems.append(
            "backoff takes Retry.fixed(...) or Retry.exponential(min=..., max=...), got "
            f"{retry.backoff!r}"
        )
        retry = dataclasses.replace(retry, backoff=None)
    if isinstance(retry.max_attempts, bool) or not isinstance(retry.max_attempts, int):
        problems.append(f"max_attempts must be an integer, got {retry.max_attempts!r}")
    elif retry.max_attempts < 1:
        problems.append(f"max_attempts must be >= 1, got {retry.max_attempts}")
    backoff = retry.backoff
    low = high = 0.0
    jitter = 0.0
    if backoff is not None:
        low_s, high_s = seconds(backoff.min), seconds(backoff.max)
        if low_s is None or low_s <= 0:
            problems.append(f"backoff min must be > 0 seconds ({LONGEST}), got {backoff.min!r}")
        if high_s is None or high_s <= 0:
            problems.append(f"backoff max must be > 0 seconds ({LONGEST}), got {backoff.max!r}")
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


def _check_recovery_flags(spec: StepSpec, issues: Issues) -> bool:
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


MAX_DURATION = 100 * 365 * 86400.0
"""The longest duration a definition declares (a timeout, a wait, a backoff, a deadline), in
seconds: a hundred years. A timer much further out would be past the year 9999, which no
datetime can hold: the run would fail when it set it, or its start would."""

LONGEST = "at most 100 years"
"""How the bound reads in the issues that refuse a longer duration."""


def seconds(value: object) -> float | None:
    """``value`` (a number of seconds or a timedelta) in seconds.

    ``None`` if it is neither, or longer than :data:`MAX_DURATION`.
    """
    if isinstance(value, timedelta):
        found = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        found = float(value)
    else:
        return None
    return found if found <= MAX_DURATION else None
