"""What a step sees: the run state it binds from, the snapshot it is called with, its output."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_jsonable_python

from squidmesh_sdk import errors, strict_json
from squidmesh_sdk.graph import StepNode
from squidmesh_sdk.store.records import SCHEDULE_KEY, Run

__all__ = ["merge_output", "namespaced", "normalize_output", "snapshot", "state"]


def state(run: Run) -> dict[str, Any]:
    """Payload overlaid with context: what a step's parameters are bound from."""
    return {**run.payload, **run.context}


def snapshot(node: StepNode, run_state: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs ``node`` will be called with, taken from ``run_state`` by parameter name.

    A step with ``**kwargs`` sees the whole state; a built-in step takes no input.
    """
    if node.body is None:
        return {}
    binder = node.body.binder
    if binder.var_keyword:
        return dict(run_state)
    return {name: run_state[name] for name in binder.input_names if name in run_state}


def normalize_output(step: str, value: object) -> dict[str, Any]:
    """A step's return value as a strict-JSON dict (see :mod:`squidmesh_sdk.strict_json`).

    A dataclass instance stands for the mapping of its fields (shallowly: nested values are
    converted as any value is).

    Raises:
        StepOutputError: not a mapping, model, dataclass or ``None``, or values JSON cannot
            hold (the error names the JSON path of the first one, such as ``$.items[2].price``).
    """
    if value is None:
        return {}
    # A plain dict, what most steps return, skips the checks below: an isinstance of an ABC
    # (pydantic's models, ``Mapping``) is a Python call (``abc``'s) at every step.
    if type(value) is not dict:
        value = _as_mapping(step, value)
    bad_keys = [key for key in value if not isinstance(key, str)]
    if bad_keys:
        raise errors.StepOutputError(step, f"returned non-string keys {bad_keys!r}")
    # Checked before and after the conversion: before, so deep nesting and non-UTF-8 bytes are
    # named by their path; after, for what the conversion produced (models, dataclasses...),
    # unless the value was JSON's own (most outputs), which the conversion gives back as is.
    problem, own = strict_json.scan(value)
    if problem is None:
        try:
            jsonable = to_jsonable_python(dict(value))
        except (PydanticSerializationError, ValueError) as exc:
            raise errors.StepOutputError(
                step, f"returned a value JSON cannot hold ({exc})"
            ) from None
        if not own:  # else the conversion gave back what was checked
            problem = strict_json.find_problem(jsonable)
    if problem is not None:
        raise errors.StepOutputError(
            step, f"returned a value that is not strict JSON: {problem.reason}", path=problem.path
        )
    assert isinstance(jsonable, dict)  # noqa: S101 - a dict stays a dict
    return jsonable


def _as_mapping(step: str, value: object) -> Mapping[Any, Any]:
    """A step's output that is not a plain dict, as a mapping (see :func:`normalize_output`)."""
    if isinstance(value, BaseModel):
        try:
            value = value.model_dump(mode="json", by_alias=True)
        except (PydanticSerializationError, ValueError) as exc:
            raise errors.StepOutputError(
                step, f"returned a model JSON cannot hold ({exc})"
            ) from None
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if not isinstance(value, Mapping):
        raise errors.StepOutputError(
            step,
            f"returned {type(value).__name__}; return a mapping, a pydantic model, a dataclass "
            "or None",
        )
    return value


def namespaced(node: StepNode, output: Mapping[str, Any]) -> dict[str, Any]:
    """The output as stored and merged: under the step's output key when it has one."""
    return {node.output_key: dict(output)} if node.output_key else dict(output)


def merge_output(context: Mapping[str, Any], output: Mapping[str, Any]) -> dict[str, Any]:
    """The context with ``output`` merged in, shallowly; the schedule key is never replaced."""
    return {**context, **{k: v for k, v in output.items() if k != SCHEDULE_KEY}}
