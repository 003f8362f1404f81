"""The workflows the benchmarks run, declared with the public authoring API.

Every step does nothing but return a small dict, so what is measured is squidmesh's own cost
per step: claiming the job, recording the attempt and the output, and dispatching what comes
next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Client, ConcurrencyLimit, DatabaseExecutor, Workflow, manual
from squidmesh_sdk.runtime.events import Observer

__all__ = [
    "FAN_OUT",
    "FAN_OUT_STEPS",
    "FAN_OUT_WIDTH",
    "KEYED",
    "LINEAR",
    "LINEAR_STEPS",
    "WORKFLOWS",
    "make_client",
]

LINEAR = "bench_linear"
"""Five steps in a chain: ``step_1 -> ... -> step_5 -> COMPLETE``."""
LINEAR_STEPS = 5

FAN_OUT = "bench_fan_out"
"""A root, ten branches ``after=[root]`` and a join ``after=[every branch]``."""
FAN_OUT_WIDTH = 10
FAN_OUT_STEPS = FAN_OUT_WIDTH + 2

KEYED = "bench_keyed"
"""The linear workflow with a per-key concurrency limit on ``payload.key`` (row 8)."""

POLL_INTERVAL = 0.05
"""Seconds between a worker's looks at an empty queue (in-process workers are also woken)."""


def _returning(key: str, output_bytes: int = 0) -> Callable[[], dict[str, Any]]:
    """A step body that returns ``{key: 1}``, or ``{key: "x" * output_bytes}`` when asked."""
    value: Any = "x" * output_bytes if output_bytes else 1

    def body() -> dict[str, Any]:
        """Return the step's output."""
        return {key: value}

    body.__name__ = body.__qualname__ = key
    return body


def linear(
    steps: int = LINEAR_STEPS,
    *,
    name: str = LINEAR,
    output_bytes: int = 0,
    concurrency: ConcurrencyLimit | None = None,
) -> Workflow:
    """A linear workflow: ``steps`` steps chained to ``COMPLETE``.

    Args:
        steps: How many steps.
        name: The workflow's name.
        output_bytes: When not 0, each step returns a string of this many bytes (the run's
            state grows by that much per step).
        concurrency: A per-key limit on the run's steps (its key is in the payload then).
    """
    if concurrency is None:
        wf = Workflow(name, triggers=[manual("go")])
    else:
        wf = Workflow(name, triggers=[manual("go", payload=KeyPayload)], concurrency=concurrency)
    handles = [
        wf.step(name=f"step_{index}")(_returning(f"step_{index}", output_bytes))
        for index in range(1, steps + 1)
    ]
    wf.chain(*handles, COMPLETE)
    return wf


def fan_out(width: int = FAN_OUT_WIDTH) -> Workflow:
    """The fan-out / fan-in workflow: root, ``width`` parallel branches, join."""
    wf = Workflow(FAN_OUT, triggers=[manual("go")])
    root = wf.step(name="root")(_returning("root"))
    branches = [
        wf.step(name=f"branch_{index}", after=[root])(_returning(f"branch_{index}"))
        for index in range(1, width + 1)
    ]
    wf.step(name="join", after=branches)(_returning("join"))
    return wf


class KeyPayload(BaseModel):
    """The payload of the keyed benchmark runs."""

    key: str


WORKFLOWS = (
    linear(),
    fan_out(),
    linear(name=KEYED, concurrency=ConcurrencyLimit("payload.key", limit=2)),
)


def make_client(url: str, observers: Iterable[Observer] = ()) -> Client:
    """A client on ``url`` with the benchmark workflows, queueing work in the database.

    Only the given observers are attached (no logging observer), in the main process and in
    worker processes alike.
    """
    return Client(url, WORKFLOWS, executor=DatabaseExecutor(), observers=list(observers))
