"""The threads a worker performs jobs on, and the event loop their async steps share."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from squidmesh_sdk.runtime import invoke

__all__ = ["step_threads"]


@contextmanager
def step_threads(concurrency: int) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """``concurrency`` delivery threads, and one private event loop thread for async steps.

    An async step body runs on the loop while its delivery thread waits for it, so an I/O-bound
    async step does not hold a thread's CPU.
    """
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, name="squidmesh-loop", daemon=True)
    loop_thread.start()

    def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=concurrency,
        thread_name_prefix="squidmesh-job",
        initializer=invoke.use_async_runner,
        initargs=(run,),
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join()
        loop.close()
