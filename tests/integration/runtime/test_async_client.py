"""AsyncClient: every Client operation as a coroutine that leaves the event loop free."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    AsyncClient,
    AsyncRunHandle,
    Client,
    CronStart,
    DatabaseExecutor,
    IdempotencyConflict,
    InlineExecutor,
    InvalidArgument,
    InvalidPayload,
    NonRetryableError,
    RunExplanation,
    RunNotFound,
    RunWaitTimeout,
    UnsafeReplay,
    Worker,
    Workflow,
    cron,
    manual,
)
from squidmesh_sdk.store import jobs as job_store

T = TypeVar("T")


def run(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async test body on a fresh event loop."""
    return asyncio.run(coroutine())


class Order(BaseModel):
    order_id: str
    seconds: float = 0.0


orders = Workflow("orders", triggers=[manual("place", payload=Order)])


@orders.step
def prepare(order_id: str, seconds: float) -> dict[str, str]:
    time.sleep(seconds)  # blocking work: it must not block the caller's event loop
    return {"prepared": order_id}


orders.chain(prepare, COMPLETE)

approvals = Workflow("approvals", triggers=[manual("ask")])
review = approvals.approval("review", output="review")
declined = approvals.log("declined", message="declined")
approvals.transition(review, on="ok", to=COMPLETE)
approvals.transition(review, on="error", to=declined)
approvals.chain(declined, COMPLETE)

pausing = Workflow("pausing", triggers=[manual("hold")])
pausing.chain(pausing.pause("hold", output="hold"), COMPLETE)

irreversible = Workflow("irreversible", triggers=[manual("send")])


@irreversible.step(irreversible=True)
def send_money() -> dict[str, bool]:
    return {"sent": True}


irreversible.chain(send_money, COMPLETE)

failing = Workflow("failing", triggers=[manual("go")])


@failing.step
def explode() -> dict[str, Any]:
    raise NonRetryableError("boom")


failing.chain(explode, COMPLETE)

nightly = Workflow(
    "nightly", triggers=[cron("tick", "0 3 * * *", idempotency="return_existing_run")]
)
nightly.chain(nightly.log("note", message="ran"), COMPLETE)


class Ping(BaseModel):
    value: int


pinged = Workflow("pinged", triggers=[manual("go")])
pinged.chain(pinged.signal("ping", payload=Ping, output="ping"), COMPLETE)

WORKFLOWS = [orders, approvals, pausing, irreversible, failing, nightly, pinged]


def test_every_operation_of_the_client_as_a_coroutine(database_url: str) -> None:
    async def body() -> None:
        async with AsyncClient(database_url, WORKFLOWS, observers=()) as client:
            assert await client.migrate() == []
            assert client.definition("orders").name == "orders"
            assert set(client.workflows) == {w.name for w in WORKFLOWS}

            started = await client.start_run(orders, {"order_id": "o-1"})
            assert started.status == "pending"  # as created; the in-process executor ran it
            inspected = await client.inspect_run(started.id, include_history=True)
            assert [sr.step for sr in inspected.step_runs or ()] == ["prepare"]
            explanation = await client.explain_run(started.id)
            assert isinstance(explanation, RunExplanation)
            assert explanation.reason == "completed"
            listed = await client.list_runs(workflow=orders, status="completed")
            assert [r.id for r in listed] == [started.id]

            waited = await client.wait_for_run(started.id, timeout=5, include_history=True)
            assert waited.status == "completed"
            assert waited.step_runs is not None

            asked = await client.start_run(approvals)
            await client.approve_run(asked.id, actor="ops", comment="fine")
            assert (await client.inspect_run(asked.id)).status == "completed"
            asked = await client.start_run(approvals)
            await client.reject_run(asked.id, actor="ops")
            assert (await client.inspect_run(asked.id)).status == "completed"
            assert (await client.inspect_run(asked.id, include_history=True)).step_run("declined")
            held = await client.start_run(pausing)
            await client.unblock_run(held.id, actor="ops")
            assert (await client.inspect_run(held.id)).status == "completed"
            held = await client.start_run(pausing)
            cancelled = await client.cancel_run(held.id, actor="ops", reason="stop")
            assert cancelled.status == "cancelled"

            sent = await client.start_run(irreversible)
            with pytest.raises(UnsafeReplay):
                await client.replay_run(sent.id)
            replay = await client.replay_run(sent.id, allow_irreversible=True)
            assert replay.replayed_from_run_id == sent.id

            waiting = await client.start_run(pinged)
            signal = await client.signal(waiting.id, "ping", Ping(value=3), idempotency_key="k")
            assert (signal.status, signal.step) == ("consumed", "ping")
            assert (await client.inspect_run(waiting.id)).context == {"ping": {"value": 3}}
            broken = await client.start_run(failing)
            assert (await client.inspect_run(broken.id)).status == "failed"
            retried = await client.retry_run(broken.id, actor="ops", reason="again")
            assert retried.current_step == "explode@2"
            assert (await client.inspect_run(broken.id)).status == "failed"

            cron_start = await client.start_cron_trigger("nightly", "tick", {"signal_id": "w-1"})
            assert isinstance(cron_start, CronStart)
            assert cron_start.outcome == "started"

            purged = await client.purge_runs(older_than=timedelta(days=1), dry_run=True)
            assert purged.runs == 0

    run(body)


def test_perform_delivers_a_queued_job(database_url: str) -> None:
    async def body() -> None:
        async with AsyncClient(
            database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()
        ) as client:
            started = await client.start_run(orders, {"order_id": "o-2"})
            assert started.status == "pending"
            with client.database.read() as connection:
                (job,) = job_store.list_jobs(connection)
            assert (job.kind, job.step) == ("step", "prepare")
            assert await client.perform(job.payload) == "executed"
            assert (await client.inspect_run(started.id)).status == "completed"

    run(body)


def test_start_says_whether_the_key_had_started_the_run(database_url: str) -> None:
    async def body() -> None:
        async with AsyncClient(database_url, WORKFLOWS, observers=()) as client:
            first = await client.start(orders, {"order_id": "o-1"}, idempotency_key="req-1")
            again = await client.start(orders, {"order_id": "o-1"}, idempotency_key="req-1")
            assert isinstance(first, AsyncRunHandle)
            assert (first.created, again.created, again.id) == (True, False, first.id)
            assert (await again.wait(timeout=5)).status == "completed"
            assert (await again.inspect()).idempotency_key == "req-1"
            with pytest.raises(IdempotencyConflict):
                await client.start_run(orders, {"order_id": "o-9"}, idempotency_key="req-1")

    run(body)


def test_errors_are_the_clients(database_url: str) -> None:
    async def body() -> None:
        async with AsyncClient(database_url, WORKFLOWS, observers=()) as client:
            with pytest.raises(InvalidPayload):
                await client.start_run(orders, {})
            with pytest.raises(RunNotFound):
                await client.inspect_run("0190e3a4-0000-7000-8000-000000000000")
            with pytest.raises(InvalidArgument):
                await client.wait_for_run("0190e3a4-0000-7000-8000-000000000000", timeout=-1)

    run(body)


def test_blocking_work_leaves_the_event_loop_free(database_url: str) -> None:
    async def body() -> None:
        async with AsyncClient(database_url, WORKFLOWS, observers=()) as client:
            ticks: list[float] = []

            async def ticker() -> None:
                while True:
                    ticks.append(time.monotonic())
                    await asyncio.sleep(0.02)

            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            began = time.monotonic()
            done = await client.start_run(orders, {"order_id": "slow", "seconds": 0.5})
            ended = time.monotonic()
            task.cancel()
            assert (await client.inspect_run(done.id)).status == "completed"
            assert ended - began >= 0.5
            during = [tick for tick in ticks if began < tick < ended]
            assert len(during) >= 10, during  # the loop kept running every 20 ms

    run(body)


def test_max_threads_bounds_the_operations_running_at_once(database_url: str) -> None:
    async def deliver_two(max_threads: int) -> float:
        """Seconds to perform two queued steps that each sleep 0.3 s, side by side."""
        async with AsyncClient(
            database_url,
            WORKFLOWS,
            executor=DatabaseExecutor(),
            observers=(),
            max_threads=max_threads,
        ) as client:
            started = [
                await client.start_run(orders, {"order_id": name, "seconds": 0.3})
                for name in ("a", "b")
            ]
            with client.database.read() as connection:
                jobs = [job_store.list_jobs(connection, run_id=run.id)[0] for run in started]
            began = time.monotonic()
            outcomes = await asyncio.gather(*(client.perform(job.payload) for job in jobs))
            took = time.monotonic() - began
            assert outcomes == ["executed", "executed"]
            return took

    assert run(lambda: deliver_two(1)) >= 0.6
    assert run(lambda: deliver_two(2)) < 0.55


@pytest.mark.parametrize("max_threads", [0, -1, 1.5, True, "4"])
def test_a_bad_thread_count_is_refused(database_url: str, max_threads: object) -> None:
    with pytest.raises(InvalidArgument) as raised:
        AsyncClient(database_url, WORKFLOWS, max_threads=max_threads)  # type: ignore[arg-type]
    assert raised.value.argument == "max_threads"


def test_wait_for_run_is_woken_without_a_thread_of_its_own(database_url: str) -> None:
    release = threading.Event()

    gated = Workflow("gated_async", triggers=[manual("go")])

    @gated.step
    def hold() -> dict[str, bool]:
        release.wait(timeout=30)
        return {"released": True}

    gated.chain(hold, COMPLETE)

    async def body() -> None:
        with Client(database_url, [gated], executor=DatabaseExecutor(), observers=()) as worker:
            async with AsyncClient(
                database_url, [gated], executor=DatabaseExecutor(), observers=(), max_threads=1
            ) as client:
                started = await client.start_run(gated)
                with Worker(worker, concurrency=1, poll_interval=0.05):
                    waits = [
                        asyncio.create_task(client.wait_for_run(started.id, timeout=20))
                        for _ in range(5)
                    ]
                    await asyncio.sleep(0.5)
                    # Five waits, one thread: the pool is still free for other calls.
                    pending = await asyncio.wait_for(client.inspect_run(started.id), timeout=2)
                    assert pending.status == "running"
                    with pytest.raises(RunWaitTimeout):
                        await client.wait_for_run(started.id, timeout=0.1)
                    release.set()
                    finished = await asyncio.gather(*waits)
        assert {r.status for r in finished} == {"completed"}

    try:
        run(body)
    finally:
        release.set()


def test_a_cancelled_wait_stops_waiting(database_url: str) -> None:
    async def body() -> None:
        async with AsyncClient(
            database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()
        ) as client:
            started = await client.start_run(orders, {"order_id": "never-run"})
            task = asyncio.create_task(client.wait_for_run(started.id))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await client.inspect_run(started.id)).status == "pending"

    run(body)


def test_from_client_leaves_the_client_open(database_url: str) -> None:
    with Client(database_url, WORKFLOWS, executor=InlineExecutor(), observers=()) as sync:

        async def body() -> str:
            client = AsyncClient.from_client(sync, max_threads=2)
            assert client.client is sync
            started = await client.start_run(orders, {"order_id": "o-1"})
            await client.close()
            with pytest.raises(InvalidArgument, match="closed"):
                await client.inspect_run(started.id)
            return started.id

        run_id = run(body)
        assert sync.inspect_run(run_id).status == "completed"  # still usable

    with pytest.raises(InvalidArgument) as raised:
        AsyncClient.from_client("not a client")  # type: ignore[arg-type]
    assert raised.value.argument == "client"


def _parameters(function: Callable[..., Any]) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_every_method_of_the_client_takes_the_same_arguments_as_a_coroutine() -> None:
    # Its docstrings promise the client's arguments: list_runs had no since / until,
    # replay_run no actor / reason, and unblock / approve / reject no step.
    methods = [
        name
        for name, member in inspect.getmembers(Client, callable)
        if not name.startswith("_")
        and not isinstance(inspect.getattr_static(Client, name), property)
    ]
    assert "list_runs" in methods
    differing = {}
    for name in methods:
        coroutine = getattr(AsyncClient, name, None)
        expected = _parameters(getattr(Client, name))
        found = _parameters(coroutine) if coroutine is not None else None
        if found != expected:
            differing[name] = (expected, found)
    assert differing == {}
