"""Boundary contracts checked with pydantic: trigger payloads and step inputs.

Both are built once, at compile time, so the runtime only validates.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, PydanticUndefined

from squidmesh_sdk import errors, strict_json
from squidmesh_sdk.definition.context import StepContext

__all__ = ["InputBinder", "Parameter", "PayloadContract", "StepBody", "build_step_body"]


class PayloadContract:
    """The payload rules of one trigger.

    Args:
        trigger: Trigger (or signal) name, used in error messages.
        model: The pydantic model; ``None`` accepts only an empty payload.
        subject: What carries the payload, for error messages (``"trigger"``, ``"signal"``).
    """

    __slots__ = ("_keys", "model", "subject", "trigger")

    def __init__(
        self, trigger: str, model: type[BaseModel] | None, *, subject: str = "trigger"
    ) -> None:
        self.trigger = trigger
        self.model = model
        self.subject = subject
        keys: set[str] = set()
        for name, info in (model.model_fields if model else {}).items():
            keys.add(name)
            if isinstance(info.validation_alias, str):
                keys.add(info.validation_alias)
            if info.alias:
                keys.add(info.alias)
        self._keys = frozenset(keys)

    def field_types(self) -> dict[str, Any]:
        """Payload key (alias when set, as stored) to the field's type annotation."""
        if self.model is None:
            return {}
        return {
            info.alias or name: info.annotation for name, info in self.model.model_fields.items()
        }

    def validate(self, payload: object) -> dict[str, Any]:
        """Validate ``payload``, resolve defaults and return its strict-JSON form.

        Raises:
            InvalidPayload: listing every missing, unknown and invalid field at once; or the
                first value that is not strict JSON (NaN, a NUL character, ...), by its path.
        """
        if not isinstance(payload, Mapping):
            raise errors.InvalidPayload(
                self.trigger,
                reason=f"expected a mapping, got {type(payload).__name__}",
                subject=self.subject,
            )
        self._check_strict(payload)
        unknown = [str(key) for key in payload if key not in self._keys]
        if self.model is None:
            if unknown:
                raise errors.InvalidPayload(
                    self.trigger, unknown_fields=unknown, subject=self.subject
                )
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
                self.trigger,
                missing_fields=missing,
                unknown_fields=unknown,
                invalid_fields=invalid,
                subject=self.subject,
            ) from None
        if unknown:
            raise errors.InvalidPayload(self.trigger, unknown_fields=unknown, subject=self.subject)
        try:
            dumped = instance.model_dump(mode="json", by_alias=True)
        except (PydanticSerializationError, ValueError) as exc:
            raise errors.InvalidPayload(
                self.trigger, reason=f"not JSON ({exc})", subject=self.subject
            ) from None
        self._check_strict(dumped)
        return dumped

    def _check_strict(self, payload: Mapping[str, Any]) -> None:
        problem = strict_json.find_problem(payload, root="")
        if problem is not None:
            raise errors.InvalidPayload(
                self.trigger,
                invalid_fields={problem.path: f"not strict JSON: {problem.reason}"},
                subject=self.subject,
            )

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary: field name to type and whether it is required."""
        if self.model is None:
            return {}
        fields: dict[str, Any] = {}
        for name, info in self.model.model_fields.items():
            entry: dict[str, Any] = {"type": _type_name(info.annotation)}
            entry["required"] = info.is_required()
            if info.default_factory is not None:
                entry["default_factory"] = getattr(info.default_factory, "__name__", "factory")
            elif not info.is_required():
                entry["default"] = _json_or_repr(info.default)
            fields[info.alias or name] = entry
        return fields


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
        # eval_str resolves string annotations (``from __future__ import annotations``) and keeps
        # Annotated constraints; it also sees through functools.partial and __call__ objects.
        signature = inspect.signature(fn, eval_str=True)
    except (TypeError, ValueError) as exc:
        return None, [f"has no inspectable signature ({exc})"]
    except Exception as exc:  # noqa: BLE001 - a NameError etc. from an unresolvable annotation
        return None, [f"has annotations that cannot be resolved ({type(exc).__name__}: {exc})"]
    parameters: list[Parameter] = []
    context_param: str | None = None
    var_keyword = False
    for index, (name, param) in enumerate(signature.parameters.items()):
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        if index == 0 and name in ("self", "cls") and annotation is Any:
            problems.append(
                f"looks like an unbound method ({name!r}); declare steps as functions or "
                "staticmethods, since the runtime has no instance to bind"
            )
            continue
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            problems.append(
                f"parameter {name!r} is positional-only or *args; inputs are bound by name"
            )
            continue
        if _is_step_context(annotation):
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
        is_async=_is_async(fn),
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


def _is_step_context(annotation: Any) -> bool:
    """``StepContext``, also inside ``Annotated[...]`` or ``StepContext | None``."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_step_context(typing.get_args(annotation)[0])
    if annotation is StepContext:
        return True
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and args == [
        StepContext
    ]


def _is_async(fn: Callable[..., Any]) -> bool:
    target: Any = inspect.unwrap(fn)
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.iscoroutinefunction(target):
        return True
    call = getattr(type(target), "__call__", None)  # noqa: B004 - the class's, not instance's
    return not inspect.isfunction(target) and inspect.iscoroutinefunction(call)


def _json_or_repr(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")
