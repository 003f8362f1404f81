"""Workflows and a client factory shared by the worker tests and their worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    NonRetryableError,
    Retry,
    StepContext,
    Workflow,
    manual,
)


class GatePayload(BaseModel):
    gate: str  # the step waits until this file exists
    started: str  # the step creates this file when it starts


def _five_steps() -> Workflow:
    wf = Workflow("five_steps", triggers=[manual("go")])
    handles = []
    for index in range(1, 6):

        def step(ctx: StepContext, index: int = index) -> dict[str, Any]:
            return {f"step_{index}": ctx.attempt}

        step.__name__ = step.__qualname__ = f"step_{index}"
        handles.append(wf.step(step))
    wf.chain(*handles, COMPLETE)
    return wf


def _wait_for_gate(gate: str, started: str) -> dict[str, Any]:
    """A step body: touch ``started``, then wait until ``gate`` exists."""
    Path(started).touch()
    _wait_for(gate)
    return {"blocked": "passed"}


def _wait_for(gate: str) -> None:
    """Wait until the file ``gate`` exists (two minutes at most)."""
    deadline = time.monotonic() + 120
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.02)


def _gated() -> Workflow:
    wf = Workflow("gated", triggers=[manual("go", payload=GatePayload)])

    @wf.step
    def before() -> dict[str, Any]:
        return {"before": "done"}

    blocked = wf.step(name="blocked")(_wait_for_gate)

    @wf.step
    def after() -> dict[str, Any]:
        return {"after": "done"}

    wf.chain(before, blocked, after, COMPLETE)
    return wf


def _gated_first() -> Workflow:
    """``gated``'s blocked step as the first one: a start beside an idle worker hands it over."""
    wf = Workflow("gated_first", triggers=[manual("go", payload=GatePayload)])
    blocked = wf.step(name="blocked")(_wait_for_gate)

    @wf.step
    def after() -> dict[str, Any]:
        return {"after": "done"}

    wf.chain(blocked, after, COMPLETE)
    return wf


def _delayed() -> Workflow:
    wf = Workflow("delayed", triggers=[manual("go")])

    @wf.step(retry=Retry(max_attempts=2, backoff=Retry.fixed(1.0)))
    def flaky(ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise ConnectionError("first attempt fails")
        return {"flaky": ctx.attempt}

    cool_down = wf.wait("cool_down", duration=1)
    done = wf.log("done", message="delayed workflow finished")
    wf.chain(flaky, cool_down, done, COMPLETE)
    return wf


def _one_step() -> Workflow:
    wf = Workflow("one_step", triggers=[manual("go")])

    @wf.step
    def only(ctx: StepContext) -> dict[str, Any]:
        return {"only": ctx.attempt}

    wf.chain(only, COMPLETE)
    return wf


class SagaPayload(BaseModel):
    gate: str  # the compensation waits until this file exists
    calls: str  # each compensation call appends its attempt number to this file


def _gated_saga() -> Workflow:
    wf = Workflow("gated_saga", triggers=[manual("go", payload=SagaPayload)])

    @wf.step
    def charge() -> dict[str, Any]:
        return {"charge": "c-1"}

    @charge.compensate
    def refund(gate: str, calls: str, ctx: StepContext) -> dict[str, Any]:
        with Path(calls).open("a") as log:
            log.write(f"{ctx.attempt}\n")
        _wait_for(gate)
        return {"refunded": ctx.attempt}

    @wf.step
    def ship() -> None:
        raise NonRetryableError("no courier")

    wf.chain(charge, ship, COMPLETE)
    return wf


class Payment(BaseModel):
    amount: int


def _gated_signal() -> Workflow:
    """A gated step, then a wait for signal ``paid``, then a step that reads its payload."""
    wf = Workflow("gated_signal", triggers=[manual("go", payload=GatePayload)])

    blocked = wf.step(name="blocked")(_wait_for_gate)

    paid = wf.signal("paid", payload=Payment, output="payment")

    @wf.step
    def receipt(payment: dict[str, Any]) -> dict[str, Any]:
        return {"receipt": payment["amount"]}

    wf.chain(blocked, paid, receipt, COMPLETE)
    return wf


def _gated_child() -> Workflow:
    """A child whose one step is gated (the test decides when it may finish)."""
    wf = Workflow("gated_child", triggers=[manual("go", payload=GatePayload)])

    @wf.step
    def blocked(gate: str, started: str) -> dict[str, Any]:
        _wait_for_gate(gate, started)
        return {"child_result": "done"}

    wf.chain(blocked, COMPLETE)
    return wf


def _child_parent() -> Workflow:
    wf = Workflow("child_parent", triggers=[manual("go", payload=GatePayload)])
    sub = wf.child(
        "sub",
        workflow="gated_child",
        payload_from={"gate": "gate", "started": "started"},
        output="sub",
    )

    @wf.step
    def report(sub: dict[str, Any]) -> dict[str, Any]:
        return {"reported": sub["child_result"]}

    wf.chain(sub, report, COMPLETE)
    return wf


def _child_deadline() -> Workflow:
    """A parent with 1.5 seconds whose gated child outlives it: the deadline fails the parent,
    whose end cancels the child (its body in flight: ``cancelling`` until the gate opens)."""
    wf = Workflow("child_deadline", triggers=[manual("go", payload=GatePayload)], deadline=1.5)
    sub = wf.child(
        "sub", workflow="gated_child", payload_from={"gate": "gate", "started": "started"}
    )
    wf.chain(sub, COMPLETE)
    return wf


class TimerPayload(BaseModel):
    delay: float
    until: str


def _timers() -> Workflow:
    """A computed wait, a wait until a datetime, then an approval that times out onto a route."""
    wf = Workflow("timers", triggers=[manual("go", payload=TimerPayload)])
    hold = wf.wait("hold", duration_from="delay")
    hold_until = wf.wait("hold_until", until_from="until")
    gate = wf.approval("gate", timeout=1.5)
    late = wf.log("late", message="nobody decided in time")
    wf.chain(hold, hold_until, gate, COMPLETE)
    wf.transition(gate, on="timeout", to=late)
    return wf


def _deadline() -> Workflow:
    """An approval nobody decides, in a run that has 1.5 seconds."""
    wf = Workflow("deadline", triggers=[manual("go")], deadline=1.5)
    gate = wf.approval("gate")
    wf.chain(gate, COMPLETE)
    return wf


WORKFLOWS = (
    _five_steps(),
    _gated(),
    _gated_first(),
    _delayed(),
    _one_step(),
    _gated_saga(),
    _gated_signal(),
    _gated_child(),
    _child_parent(),
    _child_deadline(),
    _timers(),
    _deadline(),
)


def make_client(url: str) -> Client:
    """A client on ``url`` that queues work in the database."""
    return Client(url, WORKFLOWS, executor=DatabaseExecutor())
