"""The :class:`Workflow` object: where steps, routes and triggers are declared."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from squidmesh_sdk.definition.conditions import Condition
from squidmesh_sdk.definition.flow import ConcurrencyLimit
from squidmesh_sdk.definition.options import Duration, Retry
from squidmesh_sdk.definition.outcomes import Complete, Outcome, RecoveryLabel
from squidmesh_sdk.definition.steps import (
    BuiltinStep,
    LogLevel,
    ParentClosePolicy,
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

    One graph holds both kinds of edge, and any step (function or built-in) may use both:

    * **dependencies** — a step with ``after=[...]`` starts once its dependencies have settled
      and at least one of them completed (a dependency on a branch that was not taken is
      ``skipped``, and does not hold the join back);
    * **routes** — :meth:`transition` / :meth:`chain` send the run from a step to the next one
      on ``ok``, ``error``, ``timeout``, a branch label the step returns
      (:class:`~squidmesh_sdk.definition.outcomes.Branch`) or a condition over its output.

    Steps that nothing leads to start with the run; a path ends at a step with no route for
    its outcome (or at ``COMPLETE``); the run completes when every path has ended.

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
        deadline: Duration | None = None,
        priority: int = 0,
        concurrency: ConcurrencyLimit | None = None,
    ) -> None:
        if isinstance(triggers, TriggerSpec):
            raise TypeError(f"triggers= takes a list, got {triggers!r}; write triggers=[...]")
        self.name = name
        self.description = description
        self.version = version
        self.deadline = deadline
        self.priority = priority
        self.concurrency = concurrency
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
        map_over: str | None = None,
        map_as: str = "item",
        max_parallel: int | None = None,
        concurrency: ConcurrencyLimit | None = None,
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
        map_over: str | None = None,
        map_as: str = "item",
        max_parallel: int | None = None,
        concurrency: ConcurrencyLimit | None = None,
    ) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
        """Declare a function as a step; usable bare (``@wf.step``) or with options.

        The function's parameters select its inputs by name from the payload and the run
        context (context wins); a parameter annotated ``StepContext`` receives run facts.
        Annotations are validated with pydantic. Return a dict, pydantic model or dataclass
        (merged into the context, or stored under ``output``) or ``None``; raise to fail the
        attempt. A required parameter must be a payload field or an output key a step before
        it declares (``output=`` or a typed return), unless one of those steps returns an
        untyped dict: the compiler checks it (docs/authoring.md, "Where inputs come from").

        Args:
            fn: The step body (when used bare).
            name: Step name; defaults to the function's ``__name__``.
            after: Dependencies: the step starts once they have settled.
            retry: Retry policy for failed attempts.
            timeout: Longest time one attempt may run.
            output: Context key to store the result under.
            irreversible: Replay after this step completed needs ``allow_irreversible``.
            compensatable: ``False`` excludes the step from saga rollback (same replay guard).
            transaction: Run the body inside a host-database transaction.
            description: Human description; defaults to the docstring's first line.
            map_over: Run the body once per element of the list at this run-state key
                (dotted: ``"order.lines"``); each element is a step run of its own, with its
                own attempts. The step's output is ``{output or name: [each output, in
                element order]}``; it fails (after the element's retries) if one element fails.
            map_as: The parameter that receives the element.
            max_parallel: Most elements running at once (``None``: all of them).
            concurrency: A per-key limit on this step's running jobs, replacing the
                workflow's ``concurrency=`` for it (database queue only).
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
                map_over=map_over,
                map_as=map_as,
                max_parallel=max_parallel,
                concurrency=concurrency,
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
        duration: Duration | None = None,
        duration_from: str | None = None,
        until_from: str | None = None,
        after: Sequence[StepRef] | None = None,
    ) -> BuiltinStep:
        """Declare a durable timer: the step completes once its time has come.

        Give exactly one of ``duration`` (fixed), ``duration_from`` (seconds read from this
        run-state key when the wait starts) or ``until_from`` (an ISO 8601 datetime with a
        time zone read from this key; a time already past completes at once). The timer is a
        job in durable storage, not memory, so it survives restarts; a value that is missing
        or not a duration fails the step with ``invalid_wait``.
        """
        spec = StepSpec(
            name=name,
            kind="wait",
            duration=duration,
            duration_from=duration_from,
            until_from=until_from,
            after=as_refs(after),
        )
        return self._add_builtin(spec)

    def pause(
        self,
        name: str,
        *,
        output: str | None = None,
        timeout: Duration | None = None,
        after: Sequence[StepRef] | None = None,
    ) -> BuiltinStep:
        """Declare a step that waits until ``unblock_run`` is called.

        The run resumes along the step's ``ok`` route. With ``timeout``, a pause still
        waiting then takes its ``timeout`` route, or fails the run (``pause_timed_out``)
        when it has none.
        """
        spec = StepSpec(
            name=name, kind="pause", output=output, timeout=timeout, after=as_refs(after)
        )
        return self._add_builtin(spec)

    def approval(
        self,
        name: str,
        *,
        output: str | None = None,
        timeout: Duration | None = None,
        after: Sequence[StepRef] | None = None,
    ) -> BuiltinStep:
        """Declare a human approval gate.

        The step waits until ``approve_run`` (follows the ``ok`` route) or ``reject_run``
        (follows the ``error`` route; without one, a rejection fails the run). The decision
        (actor, comment, metadata, time) becomes the step output, stored under ``output`` if
        given. Other branches of the run keep running while it waits. With ``timeout``, an
        approval still undecided then takes its ``timeout`` route, or fails the run
        (``approval_timed_out``) when it has none.
        """
        spec = StepSpec(
            name=name, kind="approval", output=output, timeout=timeout, after=as_refs(after)
        )
        return self._add_builtin(spec)

    def signal(
        self,
        name: str,
        *,
        signal: str | None = None,
        payload: type[Any] | None = None,
        output: str | None = None,
        timeout: Duration | None = None,
        after: Sequence[StepRef] | None = None,
    ) -> BuiltinStep:
        """Declare a step that waits for a signal sent with ``Client.signal``.

        The step waits for the signal called ``signal`` (default: the step's ``name``). A
        signal sent before the run reaches the step is kept and consumed when it does; signals
        of one name are consumed oldest first, one per wait. The signal's payload is
        validated against ``payload`` (a pydantic model; without one the signal carries no
        payload) when it is sent, and becomes the step's output, stored under ``output`` if
        given (else merged into the context). With ``timeout``, a step still waiting then
        takes its ``timeout`` route, or fails the run (``signal_timed_out``) when it has none.
        """
        spec = StepSpec(
            name=name,
            kind="signal",
            signal=signal if signal is not None else name,
            payload=payload,
            output=output,
            timeout=timeout,
            after=as_refs(after),
        )
        return self._add_builtin(spec)

    def child(
        self,
        name: str,
        *,
        workflow: str | Workflow,
        payload_from: Mapping[str, str] | None = None,
        trigger: str | None = None,
        output: str | None = None,
        timeout: Duration | None = None,
        after: Sequence[StepRef] | None = None,
        on_parent_close: ParentClosePolicy = "cancel",
    ) -> BuiltinStep:
        """Declare a step that starts a run of another workflow and waits for it to finish.

        The child run's payload is built when the step starts: each ``payload_from`` entry
        maps a field of the child's payload to the run-state key (dotted) its value is read
        from. The child is started through ``trigger`` (default: its workflow's first). One
        child is started per step run, however often the step's job is delivered. When the
        child completes, the step completes with the child's final context as its output
        (stored under ``output`` if given, else merged); when it fails or is cancelled, the
        step fails (``child_failed`` / ``child_cancelled``) and takes its ``error`` route, or
        fails the run. With ``timeout``, a child still running then is cancelled and the step
        takes its ``timeout`` route (or fails the run, ``child_timed_out``).

        ``on_parent_close``: when the run finishes (fails, or is cancelled) while the child is
        still unfinished, the child is cancelled (``"cancel"``, the default: nothing is left
        running for a parent that is gone) or left to run on its own (``"abandon"``: its end
        then reaches no one). Both are recorded in the two runs' audit trails.

        Every client that holds this workflow must hold the child's workflow too (any of its
        workers may start the child): a client given one without the other refuses to start.
        """
        if not isinstance(workflow, str | Workflow):
            raise TypeError(
                f"child step {name!r}: workflow= takes a workflow or its name, got {workflow!r}"
            )
        if payload_from is not None and not isinstance(payload_from, Mapping):
            raise TypeError(
                f"child step {name!r}: payload_from= takes a mapping of child payload fields to "
                f"run-state keys, such as {{'order_id': 'order.id'}}, got {payload_from!r}"
            )
        spec = StepSpec(
            name=name,
            kind="child",
            workflow=workflow if isinstance(workflow, str) else workflow.name,
            payload_from=dict(payload_from) if payload_from is not None else {},
            trigger_name=trigger,
            output=output,
            timeout=timeout,
            after=as_refs(after),
            on_parent_close=on_parent_close,
        )
        return self._add_builtin(spec)

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
        on: Outcome | str,
        to: StepRef | Complete,
        when: Condition | None = None,
        recovery: RecoveryLabel | None = None,
    ) -> None:
        """Route ``source``'s ``on`` outcome to ``to`` (a step or ``COMPLETE``).

        ``on`` is ``"ok"``, ``"error"`` (taken once the step's retries are exhausted, or at
        once for a non-retryable error), ``"timeout"`` (an approval, pause or wait with a
        timeout) or a branch label the step returns with ``Branch(label, output)``.

        ``when`` makes the route conditional (see :func:`~squidmesh_sdk.when`): the routes of
        one outcome are tried in declaration order, the first whose condition holds fires, and
        the route of that outcome without ``when`` is the default (required once any has one).
        ``recovery`` labels an error route for the audit trail.
        """
        self._transitions.append(
            TransitionSpec(source=source, outcome=on, target=to, recovery=recovery, condition=when)
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
