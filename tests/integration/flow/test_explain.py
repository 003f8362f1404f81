"""What a user sees of flow control: explain_run's reasons, refusals, and the executor table."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk import (
    Client,
    ConcurrencyLimit,
    DatabaseExecutor,
    FlowControlUnsupported,
    InlineExecutor,
    InvalidArgument,
    InvalidConcurrencyKey,
    RateLimit,
    Workflow,
    manual,
)
from squidmesh_sdk.port.executor import DispatchMetadata, ExecutorBinding
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import schema
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run
from squidmesh_sdk.testing import FakeClock
from tests.integration.flow.app import (
    AccountPayload,
    by_account_workflow,
    keyed_workflow,
    plain_workflow,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(database_url: str, clock: FakeClock) -> Iterator[Client]:
    workflows = [keyed_workflow(limit=1), plain_workflow(), by_account_workflow()]
    with Client(database_url, workflows, executor=DatabaseExecutor(), clock=clock) as instance:
        yield instance


def _claim(client: Client, limit: int = 10) -> list[job_store.Job]:
    with client.runtime.transaction() as tx:
        return claim_store.claim(tx, worker="w", queues=["default"], limit=limit, lease=60)


def _count(client: Client, table: sa.Table) -> int:
    with client.database.read() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0


def test_a_run_held_by_its_key_explains_which_key_and_how_many_run(client: Client) -> None:
    first = client.start_run("keyed", {"customer": "acme"})
    second = client.start_run("keyed", {"customer": "acme"})
    (job,) = _claim(client)
    assert job.run_id == first.id
    explanation = client.explain_run(second.id)
    assert explanation.reason == "waiting_for_concurrency_limit"
    assert explanation.step == "keyed_1"
    assert explanation.details["concurrency_key"] == 'keyed:payload.customer="acme"'
    assert (explanation.details["limit"], explanation.details["running"]) == (1, 1)
    assert explanation.next_actions == ("wait_for_concurrency_slot", "cancel_run")
    # The run whose step holds the slot is not held.
    assert client.explain_run(first.id).reason != "waiting_for_concurrency_limit"


def test_a_run_held_by_its_queue_s_concurrency_explains_it(client: Client) -> None:
    client.set_queue_limits("default", concurrency=1)
    client.start_run("plain", {"customer": "a"})
    second = client.start_run("plain", {"customer": "b"})
    assert len(_claim(client)) == 1
    explanation = client.explain_run(second.id)
    assert explanation.reason == "waiting_for_queue_limit"
    assert explanation.details["queue"] == "default"
    assert (explanation.details["concurrency"], explanation.details["running"]) == (1, 1)
    assert "set_queue_limits" in explanation.next_actions
    assert "clear_queue_limits" in explanation.next_actions
    client.clear_queue_limits("default")
    assert client.explain_run(second.id).reason == "pending_dispatch"


def test_a_rate_limited_run_says_when_the_next_slot_comes(client: Client, clock: FakeClock) -> None:
    client.set_queue_limits("default", rate_limit=RateLimit(1, per=timedelta(hours=1)))
    client.start_run("plain", {"customer": "a"})
    second = client.start_run("plain", {"customer": "b"})
    assert len(_claim(client)) == 1
    clock.advance(600)
    explanation = client.explain_run(second.id)
    assert explanation.reason == "rate_limited"
    assert explanation.details["rate_limit"] == "1/3600s"
    next_slot = clock.now() + timedelta(minutes=50)
    assert explanation.details["next_slot_at"] == next_slot.isoformat()
    clock.advance(3000)
    assert client.explain_run(second.id).reason == "pending_dispatch"
    assert len(_claim(client)) == 1


def _per_payload_account() -> Workflow:
    workflow = Workflow(
        "per_account",
        triggers=[manual("go", payload=AccountPayload)],
        concurrency=ConcurrencyLimit("payload.account", limit=1),
    )

    @workflow.step
    def only() -> dict[str, bool]:
        return {"done": True}

    return workflow


def test_a_payload_without_the_key_starts_nothing(database_url: str) -> None:
    with Client(database_url, [_per_payload_account()], executor=DatabaseExecutor()) as client:
        with pytest.raises(InvalidConcurrencyKey, match=r"payload\.account") as raised:
            client.start_run("per_account", {})
        assert raised.value.code == "invalid_concurrency_key"
        assert (_count(client, schema.runs), _count(client, schema.jobs)) == (0, 0)
        client.start_run("per_account", {"account": "a-1"})
        assert (_count(client, schema.runs), _count(client, schema.jobs)) == (1, 1)


def test_a_context_value_missing_when_a_later_step_is_queued_fails_the_run(
    client: Client,
) -> None:
    run = client.start_run("by_account", {})
    (job,) = _claim(client)
    client.perform(job.payload)
    failed = client.inspect_run(run.id)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["code"] == "invalid_concurrency_key"
    explanation = client.explain_run(run.id)
    assert explanation.reason == "invalid_concurrency_key"
    assert "context.account" in explanation.details["last_error"]["details"]["reason"]
    # With the value, the step is queued with its key.
    ok = client.start_run("by_account", {"account": "acct-1"})
    (job,) = _claim(client)
    assert job.run_id == ok.id
    client.perform(job.payload)
    (charge,) = _claim(client)
    assert charge.concurrency_key == 'by_account:context.account="acct-1"'
    assert charge.concurrency_limit == 1


class HostQueue:
    """An executor of the host's own that cannot enforce concurrency keys (as Celery cannot)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def bind(self, binding: ExecutorBinding) -> None:
        del binding

    def enqueue_step(
        self, tx: Transaction, run: Run, step: str, *, schedule_in: float | None = None
    ) -> DispatchMetadata:
        self.sent.append(step)
        return {}

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        self.sent.extend(steps)
        return [{} for _ in steps]

    def enqueue_compensation(self, tx: Transaction, run: Run) -> DispatchMetadata:
        return {}

    def enqueue_cron(
        self,
        tx: Transaction,
        workflow: str,
        trigger: str,
        *,
        signal: Mapping[str, Any] | None = None,
        schedule_in: float | None = None,
    ) -> DispatchMetadata:
        return {}


def test_an_executor_that_cannot_enforce_keys_refuses_the_run_before_writing(
    database_url: str,
) -> None:
    executor = HostQueue()
    with Client(database_url, [keyed_workflow(), plain_workflow()], executor=executor) as client:
        with pytest.raises(FlowControlUnsupported, match="HostQueue cannot enforce"):
            client.start_run("keyed", {"customer": "acme"})
        assert _count(client, schema.runs) == 0
        assert executor.sent == []
        client.start_run("plain", {"customer": "acme"})  # no limit declared: fine
        with pytest.raises(InvalidArgument, match="apply to the built-in database queue"):
            client.set_queue_limits("default", concurrency=1)


def test_the_inline_executor_accepts_limited_workflows_without_enforcing_them(
    database_url: str,
) -> None:
    with Client(database_url, [keyed_workflow()], executor=InlineExecutor()) as client:
        run = client.start_run("keyed", {"customer": "acme"})
        assert client.inspect_run(run.id).status == "completed"


def test_cancelling_a_run_held_by_its_key_ends_it_and_takes_no_slot(client: Client) -> None:
    first = client.start_run("keyed", {"customer": "acme"})
    held = client.start_run("keyed", {"customer": "acme"})
    third = client.start_run("keyed", {"customer": "acme"})
    (job,) = _claim(client)
    assert job.run_id == first.id
    assert client.explain_run(held.id).reason == "waiting_for_concurrency_limit"
    cancelled = client.cancel_run(held.id, actor="ops")
    assert cancelled.status == "cancelled"
    assert client.explain_run(held.id).reason != "waiting_for_concurrency_limit"
    with client.database.read() as connection:
        assert job_store.list_jobs(connection, run_id=held.id) == []
    # The slot goes from the first run to the third: the cancelled run never takes it.
    assert _claim(client) == []
    with client.runtime.transaction() as tx:  # the first run's job ends: its slot frees
        assert job_store.complete(tx, job.id, worker="w")
    (following,) = _claim(client)
    assert following.run_id == third.id
