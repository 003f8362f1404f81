"""Check, at compile time, that every required step input has somewhere to come from.

A step's parameters are bound by name from the run's payload merged with its context (see
:mod:`squidmesh_sdk.runtime.inputs`). A required parameter (one without a default) can be
bound only if

* some trigger's payload has a field of that name (as stored: the alias when one is set), or
  ``schedule`` when the workflow has a cron trigger (cron runs carry it in their context), or
* a step *upstream* of it declares an output of that name: a step with a path to it over the
  graph's edges, of any kind. In a loop, the whole loop is upstream (a later iteration sees
  what an earlier one stored).

The same holds for the run-state keys a step reads by name: a map step's ``map_over`` and a
wait's ``duration_from`` / ``until_from`` (the first part of their dotted path); a map step's
``map_as`` parameter receives each element, so it needs no source.

What a step declares: a map step ``{output_key or name}`` (the list of its elements' outputs);
with ``output="key"`` exactly ``{key}``; otherwise its return annotation
— the keys of a ``TypedDict``, the fields of a pydantic model or a dataclass (also inside
``X | None`` and ``Annotated``), nothing for ``-> None`` — and for a built-in step what the
runtime stores (an approval's decision record; nothing for log, wait and pause). Anything
else (no annotation, ``dict``, ``Mapping``, ``Any``, ``Branch``, an open model) is *unknown*:
when any upstream step's outputs are unknown, the step keeps the run-time check
(``StepInputError``) instead.

The analysis only ever says "may be available", never "will be": a declared ``NotRequired``
key, an output of the other side of a branch, a value from a loop's earlier iteration all
count. So a workflow it accepts can still fail at run time; one it rejects could bind an input
only by a race (a parallel branch finishing first) or through a return annotation that lies.

Compensation callbacks are checked too, more loosely: they run after the run failed, with the
context of every step that completed by then (and the step's own input, a map element's item
included), so any step's declared output counts.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import typing_extensions
from pydantic import BaseModel, RootModel

from squidmesh_sdk.compiler.issues import Issues
from squidmesh_sdk.contracts import StepBody
from squidmesh_sdk.graph import COMPLETE_TARGET, Edge, StepNode, TriggerNode

__all__ = ["check_inputs", "declared_outputs"]

SCHEDULE_KEY = "schedule"
"""The context key a cron-started run carries its schedule metadata under.

The same value as ``store.records.SCHEDULE_KEY``; the compiler may not import the store.
"""

APPROVAL_RECORD_KEYS: frozenset[str] = frozenset(
    {"decision", "decided_at", "actor", "comment", "metadata"}
)
"""What an approval without ``output=`` merges into the context (``runtime/manual.py``)."""

_NO_OUTPUT_KINDS = frozenset({"log", "wait", "pause"})

Outputs = frozenset[str] | None
"""Output keys a step declares; ``None`` when they cannot be known before it runs."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Read:
    """A run-state key a step reads: a parameter, or the first part of a dotted path option."""

    key: str
    what: str  # how the message names it: "required input 'x'", "map_over 'order.lines'"
    parameter: bool = True  # a default would make it optional


def check_inputs(
    steps: Iterable[str],
    nodes: Mapping[str, StepNode],
    edges: Iterable[Edge],
    triggers: Mapping[str, TriggerNode],
    issues: Issues,
    *,
    payload_known: bool = True,
) -> None:
    """Report every required input of a step (or compensate callback) with no possible source.

    Args:
        steps: Every declared step name, also those that failed to compile (their outputs are
            unknown, so they suppress the check downstream rather than cause false alarms).
        nodes: The compiled steps.
        edges: The graph's edges, of any kind; edges into ``COMPLETE_TARGET`` are ignored.
        triggers: The compiled triggers; their payload contracts are the run's first source.
        issues: Where ``unknown_input`` and ``unknown_compensate_input`` are recorded.
        payload_known: ``False`` when a trigger failed to compile, so its payload fields are
            unknown: nothing is checked then.
    """
    if not payload_known:
        return
    names = list(dict.fromkeys(steps))
    outputs: dict[str, Outputs] = {
        name: declared_outputs(nodes[name]) if name in nodes else None for name in names
    }
    payload = _payload_keys(triggers)
    if payload is None:
        return
    upstream = _upstream(names, edges)
    for name in names:
        node = nodes.get(name)
        if node is None:
            continue
        before = upstream[name]
        if all(outputs.get(step) is not None for step in before):
            # In declaration order, so that messages read the same on every run.
            declared = _known(outputs, [step for step in names if step in before])
            others = {
                step: keys for step, keys in _known(outputs, names).items() if step not in before
            }
            for read in _unprovided(_reads(node), payload, declared):
                issues.add(
                    "unknown_input",
                    _message(f"step {name!r}", read, payload, declared, others),
                    step=name,
                )
        own = _element_outputs(node)
        if (
            node.compensation is not None
            and own is not None
            and all(keys is not None for keys in outputs.values())
        ):
            everywhere = _known(outputs, names)
            reads = _required(node.compensation)
            if node.map_over is not None:  # each element's callback sees its item and output
                reads = [read for read in reads if read.key != node.map_as]
                everywhere[f"{name} (each element)"] = own
            for read in _unprovided(reads, payload, everywhere):
                issues.add(
                    "unknown_compensate_input",
                    _message(
                        f"step {name!r}: compensate callback",
                        read,
                        payload,
                        everywhere,
                        {},
                        where="by any step",
                    ),
                    step=name,
                )


def declared_outputs(node: StepNode) -> Outputs:
    """The context keys ``node`` may add when it completes, or ``None`` when unknown."""
    if node.map_over is not None:
        return frozenset({node.output_key or node.name})  # runtime/mapping.py
    if node.output_key is not None:
        return frozenset({node.output_key})
    if node.kind == "approval":
        return APPROVAL_RECORD_KEYS
    if node.kind in _NO_OUTPUT_KINDS:
        return frozenset()
    if node.kind == "child":
        return None  # the child's final context: its workflow is compiled on its own
    if node.kind == "signal":  # runtime/signals.py: the payload, merged
        model = node.contract.model if node.contract is not None else None
        return _model_keys(model) if model is not None else frozenset()
    if node.body is None:
        return None  # a kind this module does not know: assume nothing
    return return_keys(node.body.fn)


def _element_outputs(node: StepNode) -> Outputs:
    """What one element of a map step stores (its callback sees it); nothing for other steps."""
    if node.map_over is None:
        return frozenset()
    if node.output_key is not None:
        return frozenset({node.output_key})
    return return_keys(node.body.fn) if node.body is not None else None


def return_keys(fn: Callable[..., Any]) -> Outputs:
    """The keys a body's return annotation promises, or ``None`` when it promises none."""
    try:
        annotation = inspect.signature(fn, eval_str=True).return_annotation
    except Exception:  # noqa: BLE001 - the step-body check reports unusable signatures
        return None
    if annotation is inspect.Signature.empty:
        return None
    return _keys_of(annotation)


def _keys_of(annotation: Any) -> Outputs:
    if isinstance(annotation, typing_extensions.TypeAliasType):
        return _keys_of(annotation.__value__)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _keys_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        keys: set[str] = set()
        for arm in typing.get_args(annotation):
            found = _keys_of(arm)
            if found is None:
                return None
            keys |= found
        return frozenset(keys)
    if annotation is None or annotation is type(None):
        return frozenset()
    if annotation in (typing.NoReturn, typing_extensions.Never):
        return frozenset()
    if isinstance(origin, type) or typing_extensions.is_typeddict(origin):
        annotation = origin  # a generic TypedDict, model or dataclass, subscripted
    if typing_extensions.is_typeddict(annotation):
        return frozenset(annotation.__required_keys__ | annotation.__optional_keys__)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model_keys(annotation)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return frozenset(field.name for field in dataclasses.fields(annotation))
    return None


def _model_keys(model: type[BaseModel]) -> Outputs:
    """The keys of ``model.model_dump(by_alias=True)``, as the runtime stores a model output."""
    if model.model_config.get("extra") == "allow":
        return None  # extra fields are dumped too
    return _dumped_keys(model)


def _dumped_keys(model: type[BaseModel]) -> Outputs:
    """The keys a dump by alias of ``model`` holds, or ``None`` when they are not fixed."""
    if issubclass(model, RootModel) or model.__pydantic_decorators__.model_serializers:
        return None  # the dump is not a mapping of the fields, or a serializer decides it
    keys = {
        info.serialization_alias or info.alias or name
        for name, info in model.model_fields.items()
        if not info.exclude
    }
    keys.update(info.alias or name for name, info in model.model_computed_fields.items())
    return frozenset(keys)


def _payload_keys(triggers: Mapping[str, TriggerNode]) -> Outputs:
    """Keys a run's payload may hold (as stored: by alias), plus ``schedule`` for cron runs.

    ``None`` when a payload model's dump is not a fixed set of fields.
    """
    keys: set[str] = set()
    for trigger in triggers.values():
        model = trigger.contract.model
        if model is not None:
            fields = _dumped_keys(model)
            if fields is None:
                return None
            keys |= fields
        if trigger.kind == "cron":
            keys.add(SCHEDULE_KEY)
    return frozenset(keys)


def _upstream(names: list[str], edges: Iterable[Edge]) -> dict[str, set[str]]:
    """For each step, the steps with a path to it (itself only when it is on a cycle)."""
    predecessors: dict[str, set[str]] = {name: set() for name in names}
    for edge in edges:
        if edge.target != COMPLETE_TARGET and edge.source != COMPLETE_TARGET:
            predecessors.setdefault(edge.target, set()).add(edge.source)
    upstream: dict[str, set[str]] = {}
    for name in names:
        seen: set[str] = set()
        frontier = list(predecessors.get(name, ()))
        while frontier:
            step = frontier.pop()
            if step not in seen:
                seen.add(step)
                frontier.extend(predecessors.get(step, ()))
        upstream[name] = seen
    return upstream


def _known(outputs: Mapping[str, Outputs], steps: Iterable[str]) -> dict[str, frozenset[str]]:
    """The declared outputs of ``steps``, leaving out those that declare none."""
    return {step: keys for step in steps if (keys := outputs.get(step))}


def _reads(node: StepNode) -> list[_Read]:
    """The run-state keys ``node`` needs: required parameters and key-reading options."""
    reads: list[_Read] = []
    paths = [(option, node.options.get(option)) for option in ("duration_from", "until_from")]
    if node.map_over is not None:
        paths.insert(0, ("map_over", node.map_over))
    for option, path in paths:
        if isinstance(path, str) and path:
            key = path.split(".", 1)[0]
            what = f"{option} {path!r}" + (f" (its key {key!r})" if key != path else "")
            reads.append(_Read(key, what, parameter=False))
    if node.body is not None:
        required = _required(node.body)
        if node.map_over is not None:  # each element arrives under map_as
            required = [read for read in required if read.key != node.map_as]
        reads.extend(required)
    return reads


def _required(body: StepBody) -> list[_Read]:
    """``body``'s parameters without a default."""
    return [
        _Read(parameter.name, f"required input {parameter.name!r}")
        for parameter in body.binder.parameters
        if not parameter.has_default
    ]


def _unprovided(
    reads: Iterable[_Read], payload: frozenset[str], declared: Mapping[str, frozenset[str]]
) -> list[_Read]:
    """The reads that neither the payload nor a declared output in reach provides."""
    return [
        read
        for read in reads
        if read.key not in payload and not any(read.key in keys for keys in declared.values())
    ]


def _message(
    subject: str,
    read: _Read,
    payload: frozenset[str],
    declared: Mapping[str, frozenset[str]],
    others: Mapping[str, frozenset[str]],
    *,
    where: str = "upstream",
) -> str:
    """Say where ``read`` was looked for, then the likeliest fix."""
    fields = ", ".join(sorted(payload)) or "none"
    outputs = "; ".join(f"{step}: {', '.join(sorted(keys))}" for step, keys in declared.items())
    looked = (
        f"{subject}: {read.what} is neither a payload field of any trigger "
        f"({fields}) nor an output declared {where} ({outputs or 'none'})"
    )
    elsewhere = [step for step, keys in others.items() if read.key in keys]
    if elsewhere:
        steps = ", ".join(repr(step) for step in elsewhere)
        verbs = "declares it but does" if len(elsewhere) == 1 else "declare it but do"
        return (
            f"{looked}; {steps} {verbs} not run before it: make it a dependency (after=[...]) "
            "or a route on the way there"
        )
    candidates = set(payload).union(*declared.values())
    close = difflib.get_close_matches(read.key, sorted(candidates), n=1)
    if close:
        return f"{looked}; did you mean `{close[0]}`?"
    if read.parameter:
        return f"{looked}; give it a default to make it optional"
    return looked
