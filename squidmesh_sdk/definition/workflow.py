"""The :class:`Workflow` object: where steps, routes and triggers are declared."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from squidmesh_sdk.definition.options import Duration, Retry
from squidmesh_sdk.definition.outcomes import Complete, Outcome, RecoveryLabel
from squidmesh_sdk.definition.steps import (
    BuiltinStep,
    LogLevel,
    Step,
    StepHandle,
    StepRef,
    StepSpec,
    TransitionSpec,
    as_refs,
)
from squidmesh_sdk.definition.triggers import TriggerSpec

__all__ = ["Workflow"]

P = ParamSpec("P")
R = TypeVar("R")


class Workflow:
    """A workflow under declaration.

    Nothing is registered globally: pass the workflow to ``compile`` (or to a client or worker,
    which compile it). Declaration methods record what they are given; the compiler checks it
    all and reports every problem in one :class:`~squidmesh_sdk.errors.DefinitionError`.

    Two shapes are supported, one per workflow:

    * **dependency graphs** — steps declare ``after=[...]``; roots start together, a join runs
      once all its dependencies completed;
    * **transition paths** — one entry step, then ``ok`` / ``error`` routes declared with
      :meth:`transition` or :meth:`chain`, ending in ``COMPLETE``.

    Args:
        name: Unique workflow name, stored with every run.
        triggers: One or more triggers; the first is the default for ``start_run``.
        description: Optional human description.
        version: Optional version label, stored with every run started on it. Runs stay on
            the version they started on; a client may hold several versions of one workflow
            (see docs/runtime.md, "Versions and deploys"). Without it, the version is derived
            from the graph's structure (its fingerprint), so a structural change is a new
            version and a change to step bodies only is not.
    """

    def __init__(
        self,
        name: str,
        *,
        triggers: Sequence[TriggerSpec],
        description: str | None = None,
        version: str | None = None,
    ) -> None:
        if isinstance(triggers, TriggerSpec):
            raise TypeError(f"triggers= takes a list, got {triggers!r}; write triggers=[...]")
        self.name = name
        self.description = description
        self.version = version
        self._triggers: tuple[TriggerSpec, ...] = tuple(triggers)
        self._steps: list[StepHandle] = []
        self._transitions: list[TransitionSpec] = []

    def __repr__(self) -> str:
        return f"<Workflow {self.name} steps={len(self._steps)}>"

    @property
    def triggers(self) -> tuple[TriggerSpec, ...]:
        """The declared triggers, in order."""
        return self._triggers

    @property
    def steps(self) -> tuple[StepHandle, ...]:
        """The declared steps, in declaration order."""
        return tuple(self._steps)

    @property
    def transitions(self) -> tuple[TransitionSpec, ...]:
        """The declared routes, in declaration order."""
        return tuple(self._transitions)

    # -- function steps -------------------------------------------------------------------

    @overload
    def step(self, fn: Callable[P, R], /) -> Step[P, R]: ...

    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        after: Sequence[StepRef] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        output: str | None = None,
        irreversible: bool = False,
        compensatable: bool | None = None,
        transaction: bool = False,
        description: str | None = None,
    ) -> Callable[[Callable[P, R]], Step[P, R]]: ...

    def step(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        after: Sequence[StepRef] | None = None,
        retry: Retry | None = None,
        timeout: Duration | None = None,
        output: str | None = None,
        irreversible: bool = False,
        compensatable: bool | None = None,
        transaction: bool = False,
        description: str | None = None,
    ) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
        """Declare a function as a step; usable bare (``@wf.step``) or with options.

        The function's parameters select its inputs by name from the payload and the run
        context (context wins); a parameter annotated ``StepContext`` receives run facts.
        Annotations are validated with pydantic. Return a dict or pydantic model (merged into
        the context, or stored under ``output``) or ``None``; raise to fail the attempt.

        Args:
            fn: The step body (when used bare).
            name: Step name; defaults to the function's ``__name__``.
            after: Dependencies; makes this a dependency-graph workflow.
            retry: Retry policy for failed attempts.
            timeout: Longest time one attempt may run.
            output: Context key to store the result under.
            irreversible: Replay after this step completed needs ``allow_irreversible``.
            compensatable: ``False`` excludes the step from saga rollback (same replay guard).
            transaction: Run the body inside a host-database transaction.
            description: Human description; defaults to the docstring's first line.
        """
        refs = as_refs(after)

        def decorate(body: Callable[P, R]) -> Step[P, R]:
            if not callable(body):
                raise TypeError(f"@step decorates a function, got {body!r}")
            spec = StepSpec(
                name=name if name is not None else getattr(body, "__name__", repr(body)),
                kind="function",
                fn=body,
                after=refs,
                retry=retry,
                timeout=timeout,
                output=output,
                irreversible=irreversible,
                compensatable=compensatable,
                transaction=transaction,
                description=description if description is not None else _summary(body),
            )
            handle = Step(self, spec, body)
            self._steps.append(handle)
            return handle

        if fn is not None:
            return decorate(fn)
        return decorate

    # -- built-in steps -------------------------------------------------------------------

    def log(
        self,
        name: str,
        *,
        message: str,
        level: LogLevel = "info",
        after: Sequence[StepRef] | None = None,
    ) -> BuiltinStep:
        """Declare a step that writes ``message`` to the ``squidmesh_sdk.step`` logger."""
        spec = StepSpec(name=name, kind="log", message=message, level=level, after=as_refs(after))
        return self._add_builtin(spec)

    def wait(
        self,
        name: str,
        *,
        duration: Duration,
        after: Sequence[StepRef] | None = None,
    ) -> BuiltinStep:
        """Declare a durable timer: the next step is dispatched ``duration`` later.

        The delay lives in durable storage (the executor's delayed job), not in memory, so it
        survives restarts.
        """
        spec = StepSpec(name=name, kind="wait", duration=duration, after=as_refs(after))
        return self._add_builtin(spec)

    def pause(self, name: str, *, output: str | None = None) -> BuiltinStep:
        """Declare a step that pauses the run until ``unblock_run`` is called.

        The run resumes along the step's ``ok`` route. Transition workflows only.
        """
        return self._add_builtin(StepSpec(name=name, kind="pause", output=output))

    def approval(self, name: str, *, output: str | None = None) -> BuiltinStep:
        """Declare a human approval gate.

        The run pauses until ``approve_run`` (follows the ``ok`` route) or ``reject_run``
        (follows the ``error`` route); both routes are required. The decision (actor, comment,
        metadata, time) becomes the step output, stored under ``output`` if given.
        """
        return self._add_builtin(StepSpec(name=name, kind="approval", output=output))

    def add(self, spec: StepSpec) -> StepHandle:
        """Add a step from a spec built by hand (for generated workflows).

        Returns:
            A :class:`Step` for ``"function"`` specs, else a :class:`BuiltinStep`.
        """
        if spec.kind == "function" and spec.fn is not None:
            step: StepHandle = Step(self, spec, spec.fn)
        else:
            step = BuiltinStep(self, spec)
        self._steps.append(step)
        return step

    def _add_builtin(self, spec: StepSpec) -> BuiltinStep:
        handle = BuiltinStep(self, spec)
        self._steps.append(handle)
        return handle

    # -- routes -----------------------------------------------------------------------------

    def transition(
        self,
        source: StepRef,
        *,
        on: Outcome,
        to: StepRef | Complete,
        recovery: RecoveryLabel | None = None,
    ) -> None:
        """Route ``source``'s ``on`` outcome to ``to`` (a step or ``COMPLETE``).

        ``"error"`` routes are taken once the step's retries are exhausted (or at once for a
        non-retryable error); ``recovery`` labels such a route for the audit trail.
        """
        self._transitions.append(
            TransitionSpec(source=source, outcome=on, target=to, recovery=recovery)
        )

    def chain(self, *steps: StepRef | Complete) -> None:
        """Declare ``ok`` routes between consecutive items.

        ``wf.chain(a, b, c, COMPLETE)`` is ``a -ok-> b -ok-> c -ok-> COMPLETE``.
        """
        for source, target in itertools.pairwise(steps):
            if isinstance(source, Complete):
                raise TypeError("COMPLETE can only be the last item of chain()")
            self.transition(source, on="ok", to=target)

    def __contains__(self, item: object) -> bool:
        return any(item is step for step in self._steps)


def _summary(fn: Callable[..., Any]) -> str | None:
    doc = getattr(fn, "__doc__", None)
    if not doc:
        return None
    return doc.strip().splitlines()[0].strip() or None
