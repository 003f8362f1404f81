"""Step specs and the handles the decorators return.

A :class:`StepSpec` is the frozen description of one step. Decorators and the built-in
factories on :class:`~squidmesh_sdk.definition.workflow.Workflow` build specs; code that
generates workflows can build them directly and call ``Workflow.add``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar

from squidmesh_sdk.definition.conditions import Condition
from squidmesh_sdk.definition.flow import ConcurrencyLimit
from squidmesh_sdk.definition.options import Duration, Retry
from squidmesh_sdk.definition.outcomes import Complete, Outcome, RecoveryLabel

__all__ = [
    "BUILTIN_KINDS",
    "BuiltinStep",
    "DeclaringWorkflow",
    "LogLevel",
    "ParentClosePolicy",
    "Step",
    "StepHandle",
    "StepKind",
    "StepRef",
    "StepSpec",
    "TransitionSpec",
]

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=Callable[..., Any])

StepKind = Literal["function", "log", "wait", "pause", "approval", "signal", "child"]
"""``"function"`` runs user code; the others are built-in steps with no body."""

BUILTIN_KINDS: frozenset[str] = frozenset({"log", "wait", "pause", "approval", "signal", "child"})
"""Step kinds that have no body."""

LogLevel = Literal["debug", "info", "warning", "error"]
"""Level of a built-in ``log`` step."""

ParentClosePolicy = Literal["cancel", "abandon"]
"""What a ``child`` step's unfinished child run gets when its parent run finishes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSpec:
    """Everything declared about one step. The compiler validates it.

    Attributes:
        name: Unique within the workflow.
        kind: What the step does (see :data:`StepKind`).
        fn: The body of a ``"function"`` step (sync or async).
        after: Dependencies (handles or names). ``None`` means "not a dependency step";
            an empty tuple is an error.
        retry: Retry policy; ``None`` means one attempt.
        timeout: Longest time one attempt may run.
        output: Store the step's result under this context key instead of merging it.
        irreversible: The step's effect cannot be undone; replay after it needs an override.
        compensatable: ``False`` marks the step as not compensatable (same replay guard);
            ``None`` derives it from ``irreversible``.
        compensate: Saga callback run, in reverse completion order, after the run fails.
        transaction: Run the body inside a host-database transaction.
        description: Human description (defaults to the body's docstring summary).
        message: Message of a ``"log"`` step.
        level: Level of a ``"log"`` step.
        duration: Length of a ``"wait"`` step.
        duration_from: A ``"wait"`` step's length, read from this run-state key (seconds).
        until_from: A ``"wait"`` step's end, read from this run-state key (an ISO datetime).
        map_over: Run the body once per element of the list at this run-state key.
        map_as: The parameter that receives the element (default ``"item"``).
        max_parallel: Most elements of a map step running at once (``None``: all).
        signal: The signal name a ``"signal"`` step waits for.
        payload: The pydantic model a ``"signal"`` step validates its signal's payload with
            (``None``: the signal carries no payload).
        workflow: The workflow a ``"child"`` step starts a run of.
        payload_from: A ``"child"`` step's payload: child payload field to the run-state key
            (dotted) its value is read from.
        trigger_name: The trigger a ``"child"`` step starts its child through (``None``: the
            child workflow's first).
        on_parent_close: What a ``"child"`` step's child run that is still unfinished when its
            parent run finishes (fails, is cancelled) gets: ``"cancel"`` (the default) or
            ``"abandon"`` (it runs on, on its own).
        concurrency: A per-key limit on the step's running jobs (``None``: the workflow's).
    """

    name: str
    kind: StepKind = "function"
    fn: Callable[..., Any] | None = None
    after: tuple[StepRef, ...] | None = None
    retry: Retry | None = None
    timeout: Duration | None = None
    output: str | None = None
    irreversible: bool = False
    compensatable: bool | None = None
    compensate: Callable[..., Any] | None = None
    transaction: bool = False
    description: str | None = None
    message: str | None = None
    level: LogLevel | None = None
    duration: Duration | None = None
    duration_from: str | None = None
    until_from: str | None = None
    map_over: str | None = None
    map_as: str = "item"
    max_parallel: int | None = None
    signal: str | None = None
    payload: type[Any] | None = None
    workflow: str | None = None
    payload_from: Mapping[str, str] | None = None
    trigger_name: str | None = None
    on_parent_close: ParentClosePolicy = "cancel"
    concurrency: ConcurrencyLimit | None = None


class DeclaringWorkflow(Protocol):
    """The workflow a step was declared on, as its handle sees it.

    A :class:`~squidmesh_sdk.definition.workflow.Workflow`; typed by this protocol so that
    this module, which the workflow module builds on, does not import it back.
    """

    @property
    def name(self) -> str:
        """The workflow's name."""
        ...


class StepHandle:
    """A declared step of one workflow; use it in ``after=[...]`` and transitions."""

    __slots__ = ("_spec", "_workflow")

    def __init__(self, workflow: DeclaringWorkflow, spec: StepSpec) -> None:
        self._workflow = workflow
        self._spec = spec

    @property
    def name(self) -> str:
        """The step name."""
        return self._spec.name

    @property
    def spec(self) -> StepSpec:
        """The step's current spec."""
        return self._spec

    @property
    def workflow(self) -> DeclaringWorkflow:
        """The workflow this step was declared on."""
        return self._workflow

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._workflow.name}.{self.name} ({self._spec.kind})>"


class Step(StepHandle, Generic[P, R]):
    """A function step. Calling it calls the original function, so unit tests can too."""

    __slots__ = ("__dict__", "_fn")

    def __init__(self, workflow: DeclaringWorkflow, spec: StepSpec, fn: Callable[P, R]) -> None:
        super().__init__(workflow, spec)
        self._fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # Declared in a class body: behave like the function would (a bound method), so the
        # method stays callable; the compiler reports that the runtime cannot bind ``self``.
        if instance is None:
            return self
        return types.MethodType(self._fn, instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the original function (the runtime binds inputs itself)."""
        return self._fn(*args, **kwargs)

    def compensate(self, fn: C) -> C:
        """Declare ``fn`` as this step's saga compensation callback.

        After the run fails for good, callbacks of completed steps run in reverse completion
        order. Parameters are bound by name from the payload, the run context and this step's
        output; a :class:`~squidmesh_sdk.definition.context.StepContext` parameter receives
        ``compensating=True`` and the run's ``failure``.

        Returns:
            ``fn`` itself, unchanged.

        Raises:
            TypeError: the step already has a compensate callback.
        """
        if self._spec.compensate is not None:
            raise TypeError(
                f"step {self.name!r} already has a compensate callback "
                f"({getattr(self._spec.compensate, '__name__', self._spec.compensate)!r})"
            )
        self._spec = replace(self._spec, compensate=fn)
        return fn


class BuiltinStep(StepHandle):
    """A built-in step (log, wait, pause, approval, signal, child): it has no body to call."""

    __slots__ = ()


StepRef = StepHandle | str
"""A step by handle (preferred) or by name (escape hatch for generated workflows)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransitionSpec:
    """A route: from ``source`` on ``outcome`` (when ``condition`` holds) go to ``target``.

    Attributes:
        source: The step the route leaves.
        outcome: ``"ok"`` (the step returned), ``"error"`` (retries exhausted), ``"timeout"``
            (an approval, pause or wait ran out of time) or a branch label.
        target: The next step, or ``COMPLETE``.
        recovery: Audit label of an error route (``"compensation"`` or ``"undo"``).
        condition: Fire only when this holds; routes of one outcome are tried in declaration
            order and the one without a condition is the default.
    """

    source: StepRef
    outcome: Outcome | str
    target: StepRef | Complete
    recovery: RecoveryLabel | None = None
    condition: Condition | None = None


def ref_name(ref: StepRef) -> str:
    """Return the step name a reference points at."""
    return ref if isinstance(ref, str) else ref.name


def as_refs(refs: Sequence[StepRef] | None) -> tuple[StepRef, ...] | None:
    """Normalise an ``after=`` argument, rejecting a bare string (a classic typo)."""
    if refs is None:
        return None
    if isinstance(refs, str | StepHandle):
        raise TypeError(
            f"after= takes a list of steps, got {refs!r}; write after=[{ref_name(refs)!r}]"
        )
    return tuple(refs)
