"""Compile triggers: names, kinds, payload contracts and cron settings."""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import cron_expressions, errors
from squidmesh_sdk.compiler.issues import NAME, Issues
from squidmesh_sdk.contracts import PayloadContract, check_field_default
from squidmesh_sdk.definition.triggers import CronIdempotency, TriggerSpec
from squidmesh_sdk.graph import (
    TriggerNode,
)

_IDEMPOTENCY = frozenset(typing.get_args(CronIdempotency))


def compile_triggers(specs: Iterable[TriggerSpec], issues: Issues) -> dict[str, TriggerNode]:
    """Validate the triggers and build their payload contracts, in declaration order."""
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
        if not isinstance(name, str) or not NAME.match(name):
            issues.add("invalid_trigger_name", f"trigger name {name!r} must match {NAME.pattern}")
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
        contract = PayloadContract(name, model)
        _check_payload(name, spec, model, contract, field_types, issues)
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
            contract=contract,
            expression=spec.expression,
            timezone=spec.timezone,
            idempotency=spec.idempotency,
        )
    return nodes


def _check_payload(
    trigger: str,
    spec: TriggerSpec,
    model: type[BaseModel] | None,
    contract: PayloadContract,
    field_types: dict[str, tuple[str, Any]],
    issues: Issues,
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
    for key, annotation in contract.field_types().items():
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
            contract.validate({})
        except errors.InvalidPayload as exc:
            issues.add(
                "invalid_payload_default",
                f"cron trigger {trigger!r}: the payload built from defaults is rejected: {exc}",
            )


def _check_cron(spec: TriggerSpec, model: type[BaseModel] | None, issues: Issues) -> None:
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
