"""What the runtime tells a queue about the flow control of the jobs it is queueing.

The runtime works out each step job's concurrency key (it knows the definition, the payload
and the context) and hands the result to the executor for the duration of one enqueue call,
as trace context travels (:func:`squidmesh_sdk.port.payloads.carrying`): the
:class:`~squidmesh_sdk.port.executor.Executor` methods keep their signatures, and an executor
that enforces no key ignores it. A run's priority is on the run itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from squidmesh_sdk.scoped import Scoped

__all__ = ["StepConcurrency", "concurrency_of", "queueing"]


@dataclass(frozen=True, slots=True)
class StepConcurrency:
    """A step job's concurrency key (scope, path and value, as text) and its limit."""

    key: str
    limit: int


_current: ContextVar[Mapping[str, StepConcurrency] | None] = ContextVar(
    "squidmesh_step_concurrency", default=None
)


def queueing(
    steps: Mapping[str, StepConcurrency] | None,
) -> Scoped[Mapping[str, StepConcurrency] | None]:
    """Make ``steps`` (step key to its concurrency) visible to the executor inside the block."""
    return Scoped(_current, steps)


def concurrency_of(step: str) -> StepConcurrency | None:
    """The concurrency of ``step``'s job being queued now (``None``: no limit)."""
    current = _current.get()
    return current.get(step) if current else None
