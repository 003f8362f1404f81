"""Static checks (``mypy --strict tests/typing``) that decorators keep signatures.

``assert_type`` pins return types; a ``type: ignore[...]`` on a wrong call proves mypy rejects
it, because strict mode reports an ignore that is not needed. pytest runs the file too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, assert_type

from squidmesh_sdk import (
    COMPLETE,
    BuiltinStep,
    ConcurrencyLimit,
    Step,
    StepContext,
    Workflow,
    WorkflowDefinition,
    compile,
    manual,
)

wf = Workflow("typed", triggers=[manual("go")])


@wf.step
def bare(order_id: str, amount: int = 1) -> dict[str, int]:
    return {order_id: amount}


@wf.step(output="charge", after=[bare])
def configured(order_id: str, ctx: StepContext) -> list[str]:
    return [order_id, ctx.step]


@wf.step
async def asynchronous(n: int) -> int:
    return n


@wf.step(concurrency=ConcurrencyLimit("payload.order_id", limit=2))
def limited(order_id: str) -> dict[str, str]:
    return {"limited": order_id}


def flow_control() -> None:
    assert_type(limited("o-1"), dict[str, str])  # the decorated body keeps its signature
    limit = ConcurrencyLimit("payload.order_id", limit=2)
    Workflow("prioritised", triggers=[manual("go")], priority=5, concurrency=limit)
    Workflow("wrong", triggers=[manual("go")], concurrency=limited)  # type: ignore[arg-type]


@configured.compensate
def undo(charge: list[str]) -> None:
    return None


def test_bare_decorator_keeps_the_signature() -> None:
    assert_type(bare("o"), dict[str, int])
    assert_type(bare("o", amount=2), dict[str, int])
    assert isinstance(bare, Step)
    assert bare("o", amount=2) == {"o": 2}


def _never_called(log: BuiltinStep) -> None:
    """Wrong calls mypy must reject; each ignore would be reported if it were not needed."""
    bare(1)  # type: ignore[arg-type]
    bare("o", amount="x")  # type: ignore[arg-type]
    bare("o", nope=1)  # type: ignore[call-arg]
    configured()  # type: ignore[call-arg]
    wf.transition(log, on=3, to=log)  # type: ignore[arg-type]
    wf.log("x", message="m", level="loud")  # type: ignore[arg-type]
    wf.wait("w", duration="5s")  # type: ignore[arg-type]
    wf.wait("w", duration=1, transaction=True)  # type: ignore[call-arg]
    log.compensate  # type: ignore[attr-defined]  # noqa: B018


def test_configured_decorator_keeps_the_signature() -> None:
    assert_type(configured.name, str)
    ctx = StepContext(
        run_id="r", workflow="typed", step="configured", attempt=1, trigger="go", payload={}
    )
    assert_type(configured("o", ctx), list[str])
    assert configured("o", ctx) == ["o", "configured"]


def test_async_steps_return_coroutines() -> None:
    assert asyncio.run(assert_type(asynchronous(3), Coroutine[Any, Any, int])) == 3


def test_compensate_returns_the_callback_unchanged() -> None:
    callback: Callable[[list[str]], None] = undo
    assert callback is configured.spec.compensate


def test_builtins_and_compile_are_typed() -> None:
    other = Workflow("other", triggers=[manual("go")])
    log = other.log("only", message="m")
    assert_type(log, BuiltinStep)
    other.transition(log, on="ok", to=COMPLETE)
    assert_type(compile(other), WorkflowDefinition)
