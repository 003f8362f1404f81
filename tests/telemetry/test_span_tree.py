"""The span tree of a run, as the host's OpenTelemetry SDK receives it.

Runs go through :class:`~squidmesh_sdk.testing.WorkflowEnvironment` (in-process executor, fake
clock). The fake clock starts in 2020, so the span of a run's whole life (timed by the
runtime's clock) starts before every span timed by the wall clock, and is listed first.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from samples import dependency_recovery, manual_approval, saga_checkout
from squidmesh_sdk import COMPLETE, DispatchFailed, Retry, StepContext, Workflow, cron, manual
from squidmesh_sdk import telemetry as telemetry_module
from squidmesh_sdk.executors.scheduler import CronScheduler
from squidmesh_sdk.telemetry import nanoseconds
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.telemetry.conftest import Telemetry
from tests.telemetry.support import (
    SAGA_TREE,
    Trace,
    assert_never_mentions,
    check_links,
    run_trace,
)

SECRET = "zq-secret-7731"  # noqa: S105 - a payload value no span may carry
START = datetime(2020, 1, 1, 9, 0, tzinfo=UTC)
TO = "squidmesh.to_status"


class Order(BaseModel):
    order_id: str


def three_steps() -> Workflow:
    wf = Workflow("three_steps", triggers=[manual("order", payload=Order)])

    @wf.step
    def reserve(order_id: str) -> dict[str, Any]:
        return {"reservation": f"r-{order_id}"}

    @wf.step(retry=Retry(max_attempts=3, backoff=Retry.fixed(1.0)))
    def charge(order_id: str, ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise ConnectionError(f"payment gateway timed out charging {order_id}")
        return {"charge": f"c-{order_id}"}

    @wf.step
    def ship(reservation: str) -> dict[str, Any]:
        return {"shipment": f"s-{reservation}"}

    wf.chain(reserve, charge, ship, COMPLETE)
    return wf


@pytest.fixture
def environment(database_url: str) -> Iterator[Any]:
    """Make a WorkflowEnvironment on this test's database (closed after the test)."""
    opened: list[WorkflowEnvironment] = []

    def make(*workflows: Workflow) -> WorkflowEnvironment:
        env = WorkflowEnvironment(workflows, database=database_url, start=START)
        opened.append(env)
        return env

    yield make
    for env in opened:
        env.close()


def transitions(trace: Trace) -> list[tuple[str, str, str]]:
    """Every run transition event in the trace: (span it is on, from, to), in order."""
    return [
        (
            span.name,
            event.attributes["squidmesh.from_status"],
            event.attributes["squidmesh.to_status"],
        )
        for span in trace.spans
        for event in span.events
        if event.name == "run transition"
    ]


def test_a_three_step_run_with_a_retry(environment: Any, telemetry: Telemetry) -> None:
    env = environment(three_steps())
    run = env.start_run("three_steps", {"order_id": SECRET})
    env.run_until_idle()
    final = env.client.inspect_run(run.id)
    assert final.status == "completed"

    spans = telemetry.spans()
    trace = run_trace(spans, run.id)
    assert len(trace.spans) == len(spans), "every span belongs to the run's one trace"
    assert trace.render() == "\n".join(
        [
            "run three_steps [INTERNAL]",
            "  run three_steps completed [INTERNAL]",
            "  send reserve [PRODUCER]",
            "  process reserve [CONSUMER] attempt=1",
            "    send charge [PRODUCER]",
            "  process charge [CONSUMER] attempt=1 ERROR",
            "    send charge [PRODUCER]",
            "  process charge [CONSUMER] attempt=2",
            "    send ship [PRODUCER]",
            "  process ship [CONSUMER] attempt=1",
        ]
    )
    check_links(trace)

    root = trace.root
    assert root.attributes == {
        "squidmesh.workflow": "three_steps",
        "squidmesh.run_id": run.id,
        "squidmesh.trigger": "order",
    }
    first, failed, retried = trace.named("process reserve") + trace.named("process charge")
    assert first.attributes == {
        "squidmesh.workflow": "three_steps",
        "squidmesh.run_id": run.id,
        "squidmesh.step": "reserve",
        "squidmesh.attempt": 1,
        "squidmesh.outcome": "executed",
        "messaging.system": "squidmesh",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
    }
    assert (failed.attempt, retried.attempt) == (1, 2)
    assert failed.status == "ERROR"
    assert failed.attributes["error.type"] == "builtins.ConnectionError"
    assert "error.type" not in retried.attributes
    assert retried.status == "UNSET"
    retry_events = [e for e in failed.events if e.name == "retry scheduled"]
    assert [dict(e.attributes) for e in retry_events] == [
        {"squidmesh.step": "charge", "squidmesh.retry.delay": 1.0}
    ]
    # The retry's send is a child of the failed attempt, scheduled one second out.
    (retry_send,) = trace.linked(retried)
    assert retry_send.parent_id == failed.span_id
    assert retry_send.attributes["squidmesh.schedule_in"] == 1.0
    send = trace.one("send reserve")
    assert send.attributes == {
        "squidmesh.workflow": "three_steps",
        "squidmesh.run_id": run.id,
        "squidmesh.step": "reserve",
        "messaging.system": "squidmesh",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }

    assert transitions(trace) == [
        ("process reserve", "pending", "running"),
        ("process charge", "running", "retrying"),
        ("process charge", "retrying", "running"),
        ("process ship", "running", "completed"),
    ]

    # The run's whole life: from its insertion to the commit that completed it (one retry
    # delay later on the runtime's clock), in the run's trace under its root.
    life = trace.one("run three_steps completed")
    assert life.parent_id == root.span_id
    assert (life.start_ns, life.end_ns) == (
        nanoseconds(final.inserted_at),
        nanoseconds(final.updated_at),
    )
    assert final.inserted_at == START
    assert life.end_ns - life.start_ns == 1_000_000_000
    assert life.attributes["squidmesh.outcome"] == "completed"
    assert life.status == "UNSET"
    # The failed attempt shows its error message: the status description and exception event.
    assert failed.status_description == f"payment gateway timed out charging {SECRET}"
    assert [dict(e.attributes) for e in failed.events if e.name == "exception"] == [
        {
            "exception.type": "builtins.ConnectionError",
            "exception.message": f"payment gateway timed out charging {SECRET}",
        }
    ]
    assert_never_mentions(spans, SECRET, but_error_messages=True)


def test_a_fan_out_fan_in_run(environment: Any, telemetry: Telemetry) -> None:
    env = environment(dependency_recovery.workflow)
    run = env.start_run("dependency_recovery", {"account_id": SECRET, "invoice_id": "inv-1"})
    env.run_until_idle()
    assert env.client.inspect_run(run.id).status == "completed"

    trace = run_trace(telemetry.spans(), run.id)
    assert trace.render() == "\n".join(
        [
            "run dependency_recovery [INTERNAL]",
            "  run dependency_recovery completed [INTERNAL]",
            "  send dependency_recovery [PRODUCER]",
            "  process load_account [CONSUMER] attempt=1",
            "  process load_invoice [CONSUMER] attempt=1",
            "    send prepare_notification [PRODUCER]",
            "  process prepare_notification [CONSUMER] attempt=1",
        ]
    )
    check_links(trace)
    # Both roots were queued as one batch: one send, two consumers linked to it.
    batch = trace.one("send dependency_recovery")
    assert batch.attributes["squidmesh.steps"] == ("load_account", "load_invoice")
    assert "squidmesh.step" not in batch.attributes
    for name in ("process load_account", "process load_invoice"):
        assert trace.linked(trace.one(name)) == [batch]
    # The join is sent by the root that completed last.
    (join_send,) = trace.linked(trace.one("process prepare_notification"))
    assert join_send.parent_id == trace.one("process load_invoice").span_id
    assert transitions(trace) == [
        ("process load_account", "pending", "running"),
        ("process prepare_notification", "running", "completed"),
    ]
    assert_never_mentions(trace.spans, SECRET)


def test_a_paused_then_approved_run(environment: Any, telemetry: Telemetry) -> None:
    env = environment(manual_approval.workflow)
    run = env.start_run("manual_approval", {"account_id": SECRET})
    env.run_until_idle()
    assert env.client.inspect_run(run.id).status == "paused"

    paused = run_trace(telemetry.spans(), run.id)
    assert paused.render() == "\n".join(
        [
            "run manual_approval [INTERNAL]",
            "  send wait_for_approval [PRODUCER]",
            "  process wait_for_approval [CONSUMER] attempt=1",
        ]
    )
    assert paused.one("process wait_for_approval").attributes["squidmesh.outcome"] == "paused"

    env.clock.advance(timedelta(hours=1))  # the approver takes an hour
    env.client.approve_run(run.id, actor="alice", comment="ok")
    env.run_until_idle()
    final = env.client.inspect_run(run.id)
    assert final.status == "completed"

    trace = run_trace(telemetry.spans(), run.id)
    assert trace.trace_id == paused.trace_id
    assert trace.render() == "\n".join(
        [
            "run manual_approval [INTERNAL]",
            "  run manual_approval completed [INTERNAL]",
            "  send wait_for_approval [PRODUCER]",
            "  process wait_for_approval [CONSUMER] attempt=1",
            "  approve manual_approval [INTERNAL]",
            "    send record_approval [PRODUCER]",
            "  process record_approval [CONSUMER] attempt=1",
        ]
    )
    check_links(trace)
    approve = trace.one("approve manual_approval")
    assert approve.attributes == {
        "squidmesh.workflow": "manual_approval",
        "squidmesh.run_id": run.id,
    }
    assert transitions(trace) == [
        ("process wait_for_approval", "pending", "running"),
        ("process wait_for_approval", "running", "paused"),
        ("approve manual_approval", "paused", "running"),
        ("process record_approval", "running", "completed"),
    ]
    life = trace.one("run manual_approval completed")
    assert life.end_ns - life.start_ns == 3600 * 1_000_000_000
    assert life.start_ns == nanoseconds(final.inserted_at)
    assert_never_mentions(trace.spans, SECRET)
    assert_never_mentions(trace.spans, "alice")  # nor the approver's identity


def test_a_failed_run_with_compensation(environment: Any, telemetry: Telemetry) -> None:
    env = environment(saga_checkout.workflow)
    run = env.start_run("saga_checkout", {"order_id": SECRET, "amount_cents": 4200})
    env.run_until_idle()
    final = env.client.inspect_run(run.id)
    assert final.status == "failed"
    # The step's error message quotes the payload; the run keeps it, spans do not.
    assert SECRET in final.last_error["message"]

    spans = telemetry.spans()
    trace = run_trace(spans, run.id)
    assert trace.render() == SAGA_TREE
    check_links(trace)
    declined = "samples.saga_checkout.PaymentDeclinedError"
    for span in trace.named("process capture_payment"):
        assert span.attributes["error.type"] == declined
        assert span.status_description == f"capture declined for auth_{SECRET}"
    life = trace.one("run saga_checkout failed")
    assert life.attributes["error.type"] == declined
    assert life.attributes["squidmesh.outcome"] == "failed"

    rollback = trace.one("compensate saga_checkout")
    assert rollback.parent_id == trace.root.span_id
    assert [s.name for s in trace.linked(rollback)] == ["send compensation saga_checkout"]
    assert rollback.attributes == {  # in process: no queue, so no destination nor message id
        "squidmesh.workflow": "saga_checkout",
        "squidmesh.run_id": run.id,
        "squidmesh.outcome": "compensated",
        "messaging.system": "squidmesh",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
    }
    assert trace.one("compensate reserve_inventory").attributes == {
        "squidmesh.workflow": "saga_checkout",
        "squidmesh.run_id": run.id,
        "squidmesh.step": "reserve_inventory",
    }
    assert {s.status for s in trace.children(rollback)} == {"UNSET"}
    assert transitions(trace)[-1] == ("process capture_payment", "running", "failed")
    assert life.status_description == f"capture declined for auth_{SECRET}"
    assert_never_mentions(spans, SECRET, but_error_messages=True)


def test_failures_set_error_status_and_error_type(environment: Any, telemetry: Telemetry) -> None:
    wf = Workflow("fragile", triggers=[manual("go", payload=Order)])

    @wf.step
    def book(order_id: str) -> dict[str, Any]:
        return {"booking": order_id}

    @book.compensate
    def unbook(booking: str) -> dict[str, Any]:
        raise KeyError(f"no booking {booking}")

    @wf.step
    def pay(order_id: str) -> dict[str, Any]:
        raise ValueError(f"card refused for {order_id}")

    wf.chain(book, pay, COMPLETE)
    env = environment(wf)

    # An executor that refuses the first step: the send and the run's root span fail.
    env.executor.fail_next()
    with pytest.raises(DispatchFailed):
        env.start_run("fragile", {"order_id": SECRET})
    refused = telemetry.spans()
    assert {(s.name, s.status, s.attributes.get("error.type")) for s in refused} == {
        ("run fragile", "ERROR", "squidmesh_sdk.errors.DispatchFailed"),
        ("send book", "ERROR", "squidmesh_sdk.errors.DispatchFailed"),
    }
    for span in refused:
        assert [e.name for e in span.events] == ["exception"]
        assert span.status_description is not None
    telemetry.exporter.clear()

    run = env.start_run("fragile", {"order_id": SECRET})
    env.run_until_idle()
    assert env.client.inspect_run(run.id).status == "failed"
    trace = run_trace(telemetry.spans(), run.id)
    failed = {(s.name, s.attributes["error.type"]) for s in trace.spans if s.status == "ERROR"}
    assert failed == {
        ("process pay", "builtins.ValueError"),
        ("run fragile failed", "builtins.ValueError"),
        ("compensate book", "builtins.KeyError"),
    }
    assert trace.one("process pay").status_description == f"card refused for {SECRET}"
    assert trace.one("compensate book").status_description == f"'no booking {SECRET}'"
    # The rollback ran (and is not an error itself): its callback failed.
    assert trace.one("compensate fragile").status == "UNSET"
    assert_never_mentions(trace.spans, SECRET, but_error_messages=True)


def test_redacted_error_messages_never_reach_spans(
    environment: Any, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telemetry_module, "_redact", [True])
    env = environment(saga_checkout.workflow)
    run = env.start_run("saga_checkout", {"order_id": SECRET, "amount_cents": 4200})
    env.run_until_idle()
    assert SECRET in env.client.inspect_run(run.id).last_error["message"]

    trace = run_trace(telemetry.spans(), run.id)
    failed = [s for s in trace.spans if s.status == "ERROR"]
    assert {s.name for s in failed} == {"process capture_payment", "run saga_checkout failed"}
    for span in failed:
        assert span.status_description is None
        assert [dict(e.attributes) for e in span.events if e.name == "exception"] == [
            {"exception.type": "samples.saga_checkout.PaymentDeclinedError"}
        ]
    assert_never_mentions(trace.spans, SECRET)


def test_cancel_and_replay_are_spans_in_the_runs_traces(
    environment: Any, telemetry: Telemetry
) -> None:
    env = environment(manual_approval.workflow)
    run = env.start_run("manual_approval", {"account_id": SECRET})
    env.run_until_idle()
    env.client.cancel_run(run.id)
    replay = env.client.replay_run(run.id)
    env.run_until_idle()

    spans = telemetry.spans()
    original = run_trace(spans, run.id)
    cancel = original.one("cancel manual_approval")
    assert cancel.parent_id == original.root.span_id
    assert [(e.name, dict(e.attributes)) for e in cancel.events] == [
        ("run transition", {"squidmesh.from_status": "paused", "squidmesh.to_status": "cancelled"})
    ]
    assert original.one("run manual_approval cancelled").parent_id == original.root.span_id

    # The replay is a new run with a trace of its own, its root linked to the replay action,
    # which sits in the original run's trace.
    action = original.one("replay manual_approval")
    assert action.attributes["squidmesh.run_id"] == run.id
    again = run_trace(spans, replay.id)
    assert again.trace_id != original.trace_id
    assert again.root.name == "run manual_approval"
    assert again.root.attributes["squidmesh.replayed_from"] == run.id
    assert again.root.links == ((original.trace_id, action.span_id),)
    assert_never_mentions(spans, SECRET)


def test_a_cron_activation_links_the_run_to_the_send_that_queued_it(
    environment: Any, telemetry: Telemetry
) -> None:
    wf = Workflow("hourly", triggers=[cron("tick", "0 * * * *")])

    @wf.step
    def report(ctx: StepContext) -> dict[str, Any]:
        return {"window": (ctx.schedule or {}).get("signal_id")}

    wf.chain(report, COMPLETE)
    env = environment(wf)
    scheduler = CronScheduler(env.client.runtime)
    assert scheduler.tick() == 0  # starts tracking at 09:00; the next window is 10:00
    env.clock.advance(timedelta(hours=1))
    assert scheduler.tick() == 1
    env.run_until_idle()
    (run,) = env.client.list_runs(workflow="hourly")
    assert run.status == "completed"

    spans = telemetry.spans()
    trace = run_trace(spans, run.id)
    check_links(trace)
    (send,) = [s for s in spans if s.name == "send cron hourly"]
    assert send.kind == "PRODUCER"
    assert send.attributes == {
        "squidmesh.workflow": "hourly",
        "squidmesh.trigger": "tick",
        "messaging.system": "squidmesh",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    assert trace.root.attributes["squidmesh.trigger"] == "tick"
    assert trace.root.links == ((send.trace_id, send.span_id),)


def test_a_branch_taken_and_a_timeout_are_events_on_the_spans_that_decided_them(
    telemetry: Telemetry,
) -> None:
    from samples.guide import authoring_branches

    with WorkflowEnvironment([authoring_branches.refunds], start=START) as env:
        run = env.start_run("refunds", {"amount_cents": 900, "customer_tier": "new"})
        env.advance(8 * 3600 + 1)
        assert env.client.inspect_run(run.id).status == "completed"
    tree = run_trace(telemetry.spans(), run.id)
    assess = tree.one("process assess")
    (chosen,) = [e for e in assess.events if e.name == "squidmesh.route_taken"]
    assert chosen.attributes == {
        "squidmesh.step": "assess",
        "squidmesh.outcome": "ok",
        "squidmesh.target": "review",
    }
    timeouts = [
        e
        for span in tree.named("process review")
        for e in span.events
        if e.name == "squidmesh.route_taken"
    ]
    assert [e.attributes["squidmesh.outcome"] for e in timeouts] == ["timeout"]
