"""Calling user code: bind a body's inputs and run it, sync or async."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping
from typing import Any

from squidmesh_sdk.contracts import StepBody
from squidmesh_sdk.definition.context import StepContext

__all__ = ["call_body"]


def call_body(body: StepBody, state: Mapping[str, Any], context: StepContext) -> Any:
    """Bind ``body``'s parameters from ``state`` (and ``context``), call it, return its result.

    Raises:
        StepInputError: an input is missing or fails its annotation.
        Exception: whatever the body raises.
    """
    kwargs = body.binder.bind(state, context)
    if not body.is_async:
        return body.fn(**kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(body.fn(**kwargs))
    # Called from inside an event loop (an async host calling perform): a loop cannot be
    # re-entered, so the coroutine gets a loop of its own on a helper thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, body.fn(**kwargs)).result()
