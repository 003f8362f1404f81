"""The authoring surface: decorators keep functions usable and record what they are told."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    BuiltinStep,
    InvalidArgument,
    Retry,
    Step,
    StepContext,
    StepSpec,
    Workflow,
    compile,
    manual,
)


def test_decorated_step_is_still_a_plain_callable() -> None:
    wf = Workflow("wf", triggers=[manual("go")])

    @wf.step
    def add(a: int, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    assert add(1) == 3
    assert add(a=1, b=5) == 6
    assert isinstance(add, Step)
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert add.__wrapped__(2) == 4  # type: ignore[attr-defined]
    assert add.spec.description == "Add two numbers."


class Count(BaseModel):
    n: int


def test_async_step_stays_awaitable() -> None:
    wf = Workflow("wf", triggers=[manual("go", payload=Count)])

    @wf.step
    async def fetch(n: int) -> dict[str, int]:
        return {"n": n}

    assert asyncio.run(fetch(3)) == {"n": 3}
    wf.chain(fetch, COMPLETE)
    body = compile(wf).step("fetch").body
    assert body is not None
    assert body.is_async


def test_step_options_are_recorded_on_the_spec() -> None:
    wf = Workflow("wf", triggers=[manual("go")])
    policy = Retry(max_attempts=4, backoff=Retry.exponential(min=1, max=8))

    @wf.step(
        name="charge_card",
        retry=policy,
        timeout=timedelta(seconds=30),
        output="charge",
        irreversible=True,
        transaction=True,
        description="charge it",
    )
    def charge() -> None: ...

    spec = charge.spec
    assert (spec.name, spec.retry, spec.timeout, spec.output) == (
        "charge_card",
        policy,
        timedelta(seconds=30),
        "charge",
    )
    assert (spec.irreversible, spec.transaction, spec.description) == (True, True, "charge it")
    assert charge.name == "charge_card"


def test_compensate_decorator_attaches_and_returns_the_callback() -> None:
    wf = Workflow("wf", triggers=[manual("go")])

    @wf.step
    def reserve() -> None: ...

    @reserve.compensate
    def release(ctx: StepContext) -> dict[str, bool]:
        return {"released": ctx.compensating}

    assert reserve.spec.compensate is release
    assert release(
        StepContext(
            run_id="r",
            workflow="wf",
            step="reserve",
            attempt=1,
            trigger="go",
            payload={},
            compensating=True,
        )
    ) == {"released": True}
    wf.chain(reserve, COMPLETE)
    node = compile(wf).step("reserve")
    assert node.compensation is not None
    assert node.compensation.fn is release
    assert node.recovery.to_dict()["compensation"]["status"] == "available"


def test_nothing_is_registered_globally() -> None:
    first = Workflow("same", triggers=[manual("go")])
    second = Workflow("same", triggers=[manual("go")])

    @first.step
    def only_in_first() -> None: ...

    assert first.steps == (only_in_first,)
    assert second.steps == ()
    assert only_in_first in first
    assert only_in_first not in second


def test_after_rejects_a_bare_step_or_string() -> None:
    wf = Workflow("wf", triggers=[manual("go")])

    @wf.step
    def a() -> None: ...

    with pytest.raises(TypeError, match=r"after=\['a'\]"):
        wf.step(after=a)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="takes a list"):
        wf.log("l", message="m", after="a")  # type: ignore[arg-type]


def test_step_decorator_rejects_non_callables() -> None:
    wf = Workflow("wf", triggers=[manual("go")])
    with pytest.raises(TypeError, match="decorates a function"):
        wf.step()(42)  # type: ignore[arg-type]


def test_triggers_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="triggers= takes a list"):
        Workflow("wf", triggers=manual("go"))  # type: ignore[arg-type]


def test_a_child_step_names_a_workflow_and_maps_its_payload() -> None:
    wf = Workflow("wf", triggers=[manual("go")])
    with pytest.raises(TypeError, match="workflow= takes a workflow or its name, got 5"):
        wf.child("sub", workflow=5)  # type: ignore[arg-type]  # was AttributeError
    with pytest.raises(TypeError, match="payload_from= takes a mapping"):
        wf.child("sub", workflow="other", payload_from=5)  # type: ignore[arg-type]


def test_compile_takes_a_workflow() -> None:
    with pytest.raises(InvalidArgument, match="compile takes a Workflow, got int"):
        compile(5)  # type: ignore[arg-type]  # was AttributeError: no attribute 'name'


def test_chain_declares_ok_routes_and_rejects_complete_in_the_middle() -> None:
    wf = Workflow("wf", triggers=[manual("go")])
    a = wf.log("a", message="a")
    b = wf.log("b", message="b")
    wf.chain(a, b, COMPLETE)
    assert [(t.source, t.outcome, t.target) for t in wf.transitions] == [
        (a, "ok", b),
        (b, "ok", COMPLETE),
    ]
    with pytest.raises(TypeError, match="last item"):
        wf.chain(a, COMPLETE, b)


def test_builtin_factories_return_builtin_handles() -> None:
    wf = Workflow("wf", triggers=[manual("go")])
    log = wf.log("announce", message="hello", level="warning")
    wait = wf.wait("cool_off", duration=timedelta(minutes=5))
    pause = wf.pause("hold", output="hold")
    gate = wf.approval("review", output="review")
    assert all(isinstance(h, BuiltinStep) for h in (log, wait, pause, gate))
    assert not callable(log)
    assert [h.spec.kind for h in wf.steps] == ["log", "wait", "pause", "approval"]
    wf.chain(log, wait, pause, gate, COMPLETE)
    wf.transition(gate, on="error", to=COMPLETE)
    definition = compile(wf)
    assert definition.step("cool_off").options["duration"] == 300.0
    assert dict(definition.step("announce").options) == {"message": "hello", "level": "warning"}
    assert definition.step("review").is_manual


def test_generated_workflows_can_add_specs_directly() -> None:
    wf = Workflow("generated", triggers=[manual("go", payload=Count)])

    def body(n: int) -> dict[str, int]:
        return {"n": n + 1}

    handles = [wf.add(StepSpec(name=f"s{i}", fn=body)) for i in range(3)]
    wf.chain(*handles, COMPLETE)
    definition = compile(wf)
    assert list(definition.steps) == ["s0", "s1", "s2"]
    assert definition.initial_step == "s0"
    assert isinstance(handles[0], Step)


def test_a_step_cannot_get_two_compensate_callbacks() -> None:
    wf = Workflow("wf", triggers=[manual("go")])

    @wf.step
    def reserve() -> None: ...

    reserve.compensate(print)
    with pytest.raises(TypeError, match="already has a compensate callback"):
        reserve.compensate(repr)


def test_a_step_declared_in_a_class_still_behaves_as_a_method() -> None:
    wf = Workflow("wf", triggers=[manual("go")])

    class Service:
        rate = 2

        @wf.step
        def charge(self, amount: int) -> int:
            return amount * self.rate

    assert Service().charge(21) == 42
    assert isinstance(Service.charge, Step)


def test_partials_and_callable_objects_are_step_bodies() -> None:
    import functools

    class Fetch(BaseModel):
        amount: int
        url: str

    wf = Workflow("wf", triggers=[manual("go", payload=Fetch)])

    def scaled(factor: int, amount: int) -> dict[str, int]:
        return {"total": factor * amount}

    class Fetcher:
        async def __call__(self, url: str) -> dict[str, str]:
            return {"url": url}

    partial_step = wf.step(name="scaled")(functools.partial(scaled, 3))
    object_step = wf.step(name="fetch")(Fetcher())
    wf.chain(partial_step, object_step, COMPLETE)
    definition = compile(wf)
    scaled_body, fetch_body = definition.step("scaled").body, definition.step("fetch").body
    assert scaled_body is not None
    assert fetch_body is not None
    assert scaled_body.binder.input_names == ("amount",)
    assert (scaled_body.is_async, fetch_body.is_async) == (False, True)
    assert scaled_body.fn(**scaled_body.binder.bind({"amount": 5}, None)) == {"total": 15}
