"""Boundary contracts checked with pydantic: trigger payloads and step inputs.

Both are built once, at compile time, so the runtime only validates.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

from squidmesh_sdk import errors
from squidmesh_sdk.definition.context import StepContext

__all__ = ["InputBinder", "Parameter", "PayloadContract", "StepBody", "build_step_body"]


class PayloadContract:
    """The payload rules of one trigger.

    Args:
        trigger: Trigger name, used in error messages.
        model: The pydantic model; ``None`` accepts only an empty payload.
    """

    __slots__ = ("_keys", "model", "trigger")

    def __init__(self, trigger: str, model: type[BaseModel] | None) -> None:
        self.trigger = trigger
        self.model = model
        keys: set[str] = set()
        for name, info in (model.model_fields if model else {}).items():
            keys.add(name)
            if isinstance(info.validation_alias, str):
                keys.add(info.validation_alias)
            if info.alias:
                keys.add(info.alias)
        self._keys = frozenset(keys)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Declared field names, in declaration order."""
        return tuple(self.model.model_fields) if self.model else ()

    def field_annotations(self) -> dict[str, Any]:
        """Field name to its type annotation."""
        if self.model is None:
            return {}
        return {name: info.annotation for name, info in self.model.model_fields.items()}

    def validate(self, payload: object) -> dict[str, Any]:
        """Validate ``payload``, resolve defaults and return its JSON-safe form.

        Raises:
            InvalidPayload: listing every missing, unknown and invalid field at once.
        """
        if not isinstance(payload, Mapping):
            raise errors.InvalidPayload(
                self.trigger, reason=f"expected a mapping, got {type(payload).__name__}"
            )
        unknown = [str(key) for key in payload if key not in self._keys]
        if self.model is None:
            if unknown:
                raise errors.InvalidPayload(self.trigger, unknown_fields=unknown)
            return {}
        known = {key: value for key, value in payload.items() if key in self._keys}
        missing: list[str] = []
        invalid: dict[str, str] = {}
        try:
            instance = self.model.model_validate(known)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                field = str(error["loc"][0]) if error["loc"] else "__root__"
                if error["type"] == "missing":
                    missing.append(field)
                else:
                    invalid.setdefault(field, error["msg"])
            raise errors.InvalidPayload(
                self.trigger, missing_fields=missing, unknown_fields=unknown, invalid_fields=invalid
            ) from None
        if unknown:
            raise errors.InvalidPayload(self.trigger, unknown_fields=unknown)
        return instance.model_dump(mode="json", by_alias=True)

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary: field name to type and whether it is required."""
        if self.model is None:
            return {}
        return {
            name: {"type": _type_name(info.annotation), "required": info.is_required()}
            for name, info in self.model.model_fields.items()
        }


@dataclass(frozen=True, slots=True)
class Parameter:
    """One value parameter of a step body."""

    name: str
    adapter: TypeAdapter[Any] | None  # None: unannotated or Any, passed through as is
    has_default: bool


class InputBinder:
    """Binds a step's parameters by name from the run state, validating annotations."""

    __slots__ = ("context_param", "parameters", "step", "var_keyword")

    def __init__(
        self,
        step: str,
        parameters: tuple[Parameter, ...],
        context_param: str | None,
        *,
        var_keyword: bool,
    ) -> None:
        self.step = step
        self.parameters = parameters
        self.context_param = context_param
        self.var_keyword = var_keyword

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names this step reads from payload and context."""
        return tuple(parameter.name for parameter in self.parameters)

    def bind(self, state: Mapping[str, Any], context: StepContext | None) -> dict[str, Any]:
        """Return keyword arguments for the body.

        Raises:
            StepInputError: a required input is absent or a value fails its annotation.
        """
        kwargs: dict[str, Any] = {}
        missing: list[str] = []
        invalid: dict[str, str] = {}
        for parameter in self.parameters:
            if parameter.name not in state:
                if not parameter.has_default:
                    missing.append(parameter.name)
                continue
            value = state[parameter.name]
            if parameter.adapter is not None:
                try:
                    value = parameter.adapter.validate_python(value)
                except ValidationError as exc:
                    invalid[parameter.name] = "; ".join(
                        e["msg"] for e in exc.errors(include_url=False)
                    )
                    continue
            kwargs[parameter.name] = value
        if missing or invalid:
            raise errors.StepInputError(self.step, missing=missing, invalid=invalid)
        if self.var_keyword:
            bound = {parameter.name for parameter in self.parameters}
            kwargs.update((k, v) for k, v in state.items() if k not in bound)
        if self.context_param is not None:
            kwargs[self.context_param] = context
        return kwargs


@dataclass(frozen=True, slots=True)
class StepBody:
    """A callable the runtime invokes, with its binder built once."""

    fn: Callable[..., Any]
    is_async: bool
    binder: InputBinder
    qualname: str


def build_step_body(step: str, fn: Callable[..., Any]) -> tuple[StepBody | None, list[str]]:
    """Inspect ``fn`` and build its body, or return the reasons it cannot be a step body."""
    problems: list[str] = []
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        return None, [f"has no inspectable signature ({exc})"]
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # noqa: BLE001 - any failure to resolve annotations is reported
        return None, [f"has annotations that cannot be resolved ({exc})"]
    parameters: list[Parameter] = []
    context_param: str | None = None
    var_keyword = False
    for name, param in signature.parameters.items():
        annotation = hints.get(name, Any)
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            problems.append(
                f"parameter {name!r} is positional-only or *args; inputs are bound by name"
            )
            continue
        if annotation is StepContext:
            if context_param is not None:
                problems.append(f"declares two StepContext parameters ({context_param}, {name})")
            context_param = name
            continue
        adapter: TypeAdapter[Any] | None = None
        if annotation is not Any:
            try:
                adapter = TypeAdapter(annotation)
            except Exception as exc:  # noqa: BLE001 - pydantic raises several types here
                problems.append(f"parameter {name!r} has an unsupported annotation ({exc})")
                continue
        parameters.append(
            Parameter(
                name=name,
                adapter=adapter,
                has_default=param.default is not inspect.Parameter.empty,
            )
        )
    if problems:
        return None, problems
    binder = InputBinder(step, tuple(parameters), context_param, var_keyword=var_keyword)
    qualname = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    return StepBody(
        fn=fn,
        is_async=inspect.iscoroutinefunction(inspect.unwrap(fn)),
        binder=binder,
        qualname=qualname,
    ), []


def check_field_default(model: type[BaseModel], name: str) -> str | None:
    """Validate a field's default (literal or factory) against the field; return the problem."""
    info = model.model_fields[name]
    if info.default is not PydanticUndefined:
        value = info.default
    elif info.default_factory is not None:
        if info.default_factory_takes_validated_data:
            return None  # depends on other fields: checked when a payload is validated
        try:
            value = info.default_factory()  # type: ignore[call-arg]
        except Exception as exc:  # noqa: BLE001 - report whatever the factory raised
            return f"default factory raised {type(exc).__name__}: {exc}"
    else:
        return None
    annotated: Any = (
        typing.Annotated[info.annotation, *info.metadata] if info.metadata else (info.annotation)
    )
    try:
        TypeAdapter(annotated).validate_python(value)
    except ValidationError as exc:
        return "; ".join(e["msg"] for e in exc.errors(include_url=False))
    return None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
