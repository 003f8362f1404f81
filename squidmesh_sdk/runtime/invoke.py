"""Calling user code: bind a body's inputs and run it, sync or async."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from typing import Any

from squidmesh_sdk import errors
from squidmesh_sdk.contracts import StepBody
from squidmesh_sdk.definition.context import StepContext

__all__ = ["call_body", "use_async_runner"]

AsyncRunner = Callable[[Coroutine[Any, Any, Any]], Any]

_async_runner: ContextVar[AsyncRunner | None] = ContextVar("squidmesh_async_runner", default=None)


def use_async_runner(run: AsyncRunner) -> None:
    """Run async step bodies of this thread's context with ``run`` (a worker's event loop)."""
    _async_runner.set(run)


def call_body(
    body: StepBody,
    state: Mapping[str, Any],
    context: StepContext,
    *,
    timeout: float | None = None,
) -> Any:
    """Bind ``body``'s parameters from ``state`` (and ``context``), call it, return its result.

    ``timeout`` (seconds) cancels an async body that runs longer. A sync body cannot be
    interrupted safely from Python; its timeout is enforced by the worker's lease instead.

    Raises:
        StepInputError: an input is missing or fails its annotation.
        StepTimeout: an async body ran longer than ``timeout``.
        Exception: whatever the body raises.
    """
    kwargs = body.binder.bind(state, context)
    if not body.is_async:
        return body.fn(**kwargs)
    coroutine = body.fn(**kwargs)
    if timeout is not None:
        coroutine = _limited(coroutine, timeout, context.step)
    runner = _async_runner.get()
    if runner is not None:
        return runner(coroutine)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Called from inside an event loop (an async host calling perform): a loop cannot be
    # re-entered, so the coroutine gets a loop of its own on a helper thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _limited(coroutine: Coroutine[Any, Any, Any], timeout: float, step: str) -> Any:
    try:
        return await asyncio.wait_for(coroutine, timeout)
    except TimeoutError:
        raise errors.StepTimeout(step, timeout) from None
