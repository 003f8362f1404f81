"""Static checks (``mypy --strict tests/typing``) of the clients' start and wait signatures.

The functions are never called (they would need a database): mypy checks them, and a
``type: ignore`` on a wrong call proves it rejects it (strict mode reports an unneeded ignore).
"""

from __future__ import annotations

from datetime import timedelta
from typing import assert_type

from squidmesh_sdk import (
    AsyncClient,
    AsyncRunHandle,
    Client,
    QueueLimits,
    RateLimit,
    Run,
    RunHandle,
)


def started_and_waited(client: Client) -> None:
    assert_type(client.start_run("wf", {}, idempotency_key="k"), Run)
    handle = client.start("wf", idempotency_key="k")
    assert_type(handle, RunHandle)
    assert_type(handle.created, bool)
    assert_type(handle.wait(timeout=timedelta(seconds=5)), Run)
    assert_type(client.wait_for_run(handle.id, timeout=2.5, include_history=True), Run)
    client.wait_for_run(handle.id, timeout="5")  # type: ignore[arg-type]
    client.start_run("wf", idempotency_key=5)  # type: ignore[arg-type]
    assert_type(client.start_run("wf", priority=10).priority, int)
    client.start_run("wf", priority="high")  # type: ignore[arg-type]
    limits = client.set_queue_limits("q", rate_limit=RateLimit(100, per=timedelta(minutes=1)))
    assert_type(limits, QueueLimits)
    assert_type(client.queue_limits(), list[QueueLimits])
    client.set_queue_limits("q", rate_limit="100/1m")  # type: ignore[arg-type]


async def awaited(client: AsyncClient) -> None:
    assert_type(await client.start_run("wf", {}, idempotency_key="k"), Run)
    handle = await client.start("wf")
    assert_type(handle, AsyncRunHandle)
    assert_type(await handle.wait(timeout=1), Run)
    assert_type(await client.wait_for_run(handle.id), Run)
    assert_type(await client.list_runs(limit=5), list[Run])
    assert_type(client.client, Client)
    assert_type(await client.start_run("wf", priority=-5), Run)
    assert_type(await client.set_queue_limits("q", concurrency=2), QueueLimits)
    await client.wait_for_run(handle.id, timeout="5")  # type: ignore[arg-type]
