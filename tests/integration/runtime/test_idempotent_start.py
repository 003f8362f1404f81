"""start_run(..., idempotency_key=): the same key for the same workflow is the same run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from pydantic import BaseModel, Field

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    IdempotencyConflict,
    InvalidArgument,
    InvalidPayload,
    RunHandle,
    Workflow,
    cron,
    manual,
    now,
)
from squidmesh_sdk.store import schema
from squidmesh_sdk.testing import FakeClock
from tests.integration.runtime.conftest import MakeEnv


class Order(BaseModel):
    order_id: str
    amount_cents: int
    placed_at: datetime = Field(default_factory=now)


orders = Workflow(
    "orders", triggers=[manual("place", payload=Order), manual("replace", payload=Order)]
)


@orders.step
def charge(order_id: str, amount_cents: int) -> dict[str, str]:
    return {"charge": f"ch_{order_id}_{amount_cents}"}


orders.chain(charge, COMPLETE)

refunds = Workflow("refunds", triggers=[manual("refund")])
refunds.chain(refunds.log("note", message="refunded"), COMPLETE)

nightly = Workflow(
    "nightly",
    triggers=[cron("tick", "0 3 * * *", idempotency="return_existing_run"), manual("now")],
)
nightly.chain(nightly.log("note", message="ran"), COMPLETE)

ORDER = {"order_id": "o-1", "amount_cents": 1200}


def run_rows(client: Client) -> list[tuple[str, str | None]]:
    """(workflow, start key) of every stored run."""
    runs = schema.runs
    with client.database.read() as connection:
        rows = connection.execute(sa.select(runs.c.workflow, runs.c.start_key).order_by("workflow"))
        return [(row[0], row[1]) for row in rows]


def test_the_same_key_returns_the_run_it_started(make_env: MakeEnv) -> None:
    env = make_env(orders)
    first = env.client.start(orders, ORDER, idempotency_key="req-1")
    again = env.client.start(
        orders, {"amount_cents": 1200, "order_id": "o-1"}, idempotency_key="req-1"
    )
    through_start_run = env.client.start_run(orders, ORDER, idempotency_key="req-1")

    assert isinstance(first, RunHandle)
    assert (first.created, again.created) == (True, False)
    assert again.id == first.id == through_start_run.id
    # The run was finished by the in-process executor; the repeat sees it as it is now.
    assert again.run.status == "completed"
    assert again.run.context["charge"] == "ch_o-1_1200"
    assert again.run.idempotency_key == "req-1"
    assert env.client.inspect_run(first.id).idempotency_key == "req-1"
    assert run_rows(env.client) == [("orders", "req-1")]
    assert env.executor.dispatched == [{"kind": "step", "run_id": first.id, "step": "charge"}]
    assert first.run.status == "pending"  # as this call created it
    assert first.inspect().status == "completed"
    assert first.wait(timeout=5, include_history=True).step_runs is not None


def test_a_payload_default_computed_again_is_still_the_same_request(make_env: MakeEnv) -> None:
    env = make_env(orders)
    first = env.client.start(orders, ORDER, idempotency_key="req-1")
    env.clock.advance(timedelta(hours=3))  # placed_at's default would now be another time
    again = env.client.start(orders, ORDER, idempotency_key="req-1")
    assert (again.created, again.id) == (False, first.id)
    assert again.run.payload["placed_at"] == first.run.payload["placed_at"]


def test_a_pydantic_payload_and_its_json_are_the_same_request(make_env: MakeEnv) -> None:
    env = make_env(orders)
    placed = {**ORDER, "placed_at": "2026-01-01T00:00:00Z"}
    first = env.client.start(orders, Order.model_validate(placed), idempotency_key="req-1")
    again = env.client.start(
        orders, {**ORDER, "placed_at": "2026-01-01T00:00:00Z"}, idempotency_key="req-1"
    )
    assert (again.created, again.id) == (False, first.id)


@pytest.mark.parametrize(
    ("payload", "trigger"),
    [
        pytest.param({**ORDER, "amount_cents": 999}, None, id="another payload"),
        pytest.param(ORDER, "replace", id="another trigger"),
    ],
)
def test_another_request_under_a_used_key_is_refused(
    make_env: MakeEnv, payload: dict[str, object], trigger: str | None
) -> None:
    env = make_env(orders)
    first = env.client.start_run(orders, ORDER, idempotency_key="req-1")
    with pytest.raises(IdempotencyConflict) as raised:
        env.client.start_run(orders, payload, trigger=trigger, idempotency_key="req-1")
    error = raised.value
    assert (error.code, error.run_id, error.workflow) == (
        "idempotency_conflict",
        first.id,
        "orders",
    )
    assert (error.idempotency_key, error.trigger) == ("req-1", "place")
    assert f"already started run {first.id}" in str(error)
    assert run_rows(env.client) == [("orders", "req-1")]


def test_another_priority_under_a_used_key_is_refused(make_env: MakeEnv) -> None:
    env = make_env(orders)
    first = env.client.start_run(orders, ORDER, idempotency_key="req-1", priority=5)
    with pytest.raises(IdempotencyConflict) as raised:
        env.client.start_run(orders, ORDER, idempotency_key="req-1", priority=7)
    assert raised.value.run_id == first.id
    assert "another trigger, payload or priority" in str(raised.value)
    # A priority that is no priority is bad input first, whether or not the key is used.
    with pytest.raises(InvalidArgument, match="priority"):
        env.client.start_run(orders, ORDER, idempotency_key="req-1", priority=5000)
    # The same priority, or none (the retry accepts the run's), is the same request.
    same = env.client.start(orders, ORDER, idempotency_key="req-1", priority=5)
    unsaid = env.client.start(orders, ORDER, idempotency_key="req-1")
    assert (same.id, same.created, unsaid.id, unsaid.created) == (first.id, False, first.id, False)
    assert env.client.inspect_run(first.id).priority == 5
    # A run started without a priority has the workflow's (0): only that one matches it.
    plain = env.client.start_run(orders, ORDER, idempotency_key="req-2")
    assert env.client.start_run(orders, ORDER, idempotency_key="req-2", priority=0).id == plain.id
    with pytest.raises(IdempotencyConflict):
        env.client.start_run(orders, ORDER, idempotency_key="req-2", priority=1)
    assert run_rows(env.client) == [("orders", "req-1"), ("orders", "req-2")]


def test_keys_belong_to_one_workflow(make_env: MakeEnv) -> None:
    env = make_env(orders, refunds)
    order = env.client.start(orders, ORDER, idempotency_key="shared")
    refund = env.client.start(refunds, idempotency_key="shared")
    assert order.created
    assert refund.created
    assert order.id != refund.id
    assert run_rows(env.client) == [("orders", "shared"), ("refunds", "shared")]


def test_a_start_key_and_a_cron_window_key_do_not_collide(make_env: MakeEnv) -> None:
    env = make_env(nightly)
    scheduled = env.client.start_cron_trigger("nightly", "tick", {"signal_id": "k-1"})
    started = env.client.start("nightly", trigger="now", idempotency_key="k-1")
    by_cron_again = env.client.start_cron_trigger("nightly", "tick", {"signal_id": "k-1"})
    assert scheduled.outcome == "started"
    assert started.created
    assert started.id != scheduled.run.id
    assert (by_cron_again.outcome, by_cron_again.run.id) == ("duplicate", scheduled.run.id)
    # A cron run's schedule identity is not a start key.
    assert env.client.inspect_run(scheduled.run.id).idempotency_key is None


def test_runs_without_a_key_are_never_deduplicated(make_env: MakeEnv) -> None:
    env = make_env(orders)
    first = env.client.start(orders, ORDER)
    second = env.client.start(orders, ORDER)
    assert first.created
    assert second.created
    assert first.id != second.id
    assert first.run.idempotency_key is None


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 201, id="too long"),
        pytest.param("a\x00b", id="NUL"),
        pytest.param(42, id="a number"),
        pytest.param(b"req-1", id="bytes"),
    ],
)
def test_a_malformed_key_is_refused_before_anything_is_written(
    make_env: MakeEnv, key: object
) -> None:
    env = make_env(orders)
    with pytest.raises(InvalidArgument) as raised:
        env.client.start_run(orders, ORDER, idempotency_key=key)  # type: ignore[arg-type]
    assert raised.value.argument == "idempotency_key"
    assert "non-empty string of at most 200 characters" in str(raised.value)
    assert run_rows(env.client) == []


def test_a_key_of_200_characters_is_kept_whole(make_env: MakeEnv) -> None:
    env = make_env(orders)
    key = "é" * 200
    run = env.client.start_run(orders, ORDER, idempotency_key=key)
    assert env.client.inspect_run(run.id).idempotency_key == key


def test_an_invalid_payload_is_refused_even_when_the_key_is_taken(make_env: MakeEnv) -> None:
    env = make_env(orders)
    env.client.start_run(orders, ORDER, idempotency_key="req-1")
    with pytest.raises(InvalidPayload) as raised:
        env.client.start_run(orders, {"order_id": "o-1"}, idempotency_key="req-1")
    assert raised.value.missing_fields == ("amount_cents",)


def test_the_key_is_in_the_explanation_and_not_carried_by_a_replay(make_env: MakeEnv) -> None:
    env = make_env(orders)
    run = env.client.start_run(orders, ORDER, idempotency_key="req-1")
    assert env.client.explain_run(run.id).evidence["run"]["idempotency_key"] == "req-1"
    replay = env.client.replay_run(run.id)
    assert replay.idempotency_key is None
    assert "idempotency_key" not in env.client.explain_run(replay.id).evidence["run"]
    # The key still names the original run.
    assert env.client.start(orders, ORDER, idempotency_key="req-1").id == run.id


@pytest.fixture
def queue_clients(database_url: str) -> Iterator[list[Client]]:
    """Four clients on the test's database, as four web processes would be (no worker)."""
    clients = [
        Client(database_url, [orders], executor=DatabaseExecutor(), observers=()) for _ in range(4)
    ]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def test_twenty_concurrent_starts_with_one_key_create_one_run(
    queue_clients: list[Client],
) -> None:
    barrier = threading.Barrier(20)
    handles: list[RunHandle] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def start(index: int) -> None:
        client = queue_clients[index % len(queue_clients)]
        barrier.wait()
        try:
            handle = client.start(orders, ORDER, idempotency_key="checkout-42")
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                failures.append(exc)
            return
        with lock:
            handles.append(handle)

    threads = [threading.Thread(target=start, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert len(handles) == 20
    assert len({handle.id for handle in handles}) == 1
    assert sum(handle.created for handle in handles) == 1
    assert run_rows(queue_clients[0]) == [("orders", "checkout-42")]
    with queue_clients[0].database.read() as connection:
        jobs = connection.execute(sa.select(sa.func.count()).select_from(schema.jobs)).scalar()
    assert jobs == 1  # one first step queued, for the one run


def test_concurrent_starts_of_two_priorities_under_one_key_one_wins(
    queue_clients: list[Client],
) -> None:
    # Both may find the key free; the unique index makes one the loser, which then compares
    # its request with the winner's run.
    barrier = threading.Barrier(2)
    outcomes: dict[int, RunHandle | BaseException] = {}

    def start(priority: int) -> None:
        client = queue_clients[priority % len(queue_clients)]
        barrier.wait()
        try:
            outcomes[priority] = client.start(
                orders, ORDER, idempotency_key="checkout-7", priority=priority
            )
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcomes[priority] = exc

    threads = [threading.Thread(target=start, args=(priority,)) for priority in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    handles = {p: o for p, o in outcomes.items() if isinstance(o, RunHandle)}
    refused = {p: o for p, o in outcomes.items() if isinstance(o, IdempotencyConflict)}
    assert (len(handles), len(refused)) == (1, 1), outcomes
    ((winner, handle),) = handles.items()
    ((_, conflict),) = refused.items()
    assert handle.created
    assert handle.run.priority == winner
    assert conflict.run_id == handle.id
    assert run_rows(queue_clients[0]) == [("orders", "checkout-7")]


def test_the_clock_of_the_client_does_not_matter_to_the_key(database_url: str) -> None:
    """Two processes whose clocks disagree still share a key (it is stored, not derived)."""
    early = FakeClock(datetime.fromisoformat("2026-01-01T00:00:00+00:00"))
    late = FakeClock(datetime.fromisoformat("2026-06-01T00:00:00+00:00"))
    with (
        Client(database_url, [orders], executor=DatabaseExecutor(), clock=early) as one,
        Client(database_url, [orders], executor=DatabaseExecutor(), clock=late) as other,
    ):
        first = one.start(orders, ORDER, idempotency_key="req-1")
        again = other.start(orders, ORDER, idempotency_key="req-1")
    assert (first.created, again.created, again.id) == (True, False, first.id)
