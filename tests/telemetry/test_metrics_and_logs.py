"""Metrics through the OpenTelemetry metrics API, and structured log records."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from samples import saga_checkout
from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    Retry,
    StepContext,
    Worker,
    Workflow,
    manual,
)
from squidmesh_sdk.runtime.events import LoggingObserver
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.worker.conftest import wait_until
from tests.telemetry.conftest import Telemetry
from tests.telemetry.support import attrs, check_links, metric_delta, metric_points, run_trace

METRICS = (
    "squidmesh.runs.started",
    "squidmesh.runs.finished",
    "squidmesh.step.duration",
    "squidmesh.step.retries",
    "squidmesh.compensations",
    "squidmesh.job.schedule_to_start",
)


def snapshot(telemetry: Telemetry) -> dict[str, Any]:
    return {name: metric_points(telemetry.reader, name) for name in METRICS}


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {name: metric_delta(before[name], after[name]) for name in METRICS}


def shipping(env_clock: Any) -> Workflow:
    wf = Workflow("shipping", triggers=[manual("go")])

    @wf.step(retry=Retry(max_attempts=2))
    def label(ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise ConnectionError("label printer offline")
        return {"label": "l-1"}

    @wf.step
    def ship() -> dict[str, Any]:
        env_clock().advance(2.5)  # the step takes 2.5 s on the runtime's clock
        return {"shipped": True}

    wf.chain(label, ship, COMPLETE)
    return wf


def test_runs_steps_retries_and_compensations_are_counted(telemetry: Telemetry) -> None:
    holder: list[WorkflowEnvironment] = []
    with WorkflowEnvironment([shipping(lambda: holder[0].clock), saga_checkout.workflow]) as env:
        holder.append(env)
        before = snapshot(telemetry)
        shipped = env.start_run("shipping")
        failed = env.start_run("saga_checkout", {"order_id": "o-1", "amount_cents": 100})
        env.run_until_idle()
        assert env.client.inspect_run(shipped.id).status == "completed"
        assert env.client.inspect_run(failed.id).status == "failed"
        delta = changes(before, snapshot(telemetry))

    wf, step, outcome = "squidmesh.workflow", "squidmesh.step", "squidmesh.outcome"
    assert delta["squidmesh.runs.started"] == {
        attrs(**{wf: "shipping", "squidmesh.trigger": "go"}): 1,
        attrs(**{wf: "saga_checkout", "squidmesh.trigger": "checkout"}): 1,
    }
    assert delta["squidmesh.runs.finished"] == {
        attrs(**{wf: "shipping", "squidmesh.status": "completed"}): 1,
        attrs(**{wf: "saga_checkout", "squidmesh.status": "failed"}): 1,
    }
    # (count, sum of seconds) per workflow, step and outcome.
    assert delta["squidmesh.step.duration"] == {
        attrs(**{wf: "shipping", step: "label", outcome: "failed"}): (1, 0.0),
        attrs(**{wf: "shipping", step: "label", outcome: "completed"}): (1, 0.0),
        attrs(**{wf: "shipping", step: "ship", outcome: "completed"}): (1, 2.5),
        attrs(**{wf: "saga_checkout", step: "reserve_inventory", outcome: "completed"}): (1, 0.0),
        attrs(**{wf: "saga_checkout", step: "authorize_payment", outcome: "completed"}): (1, 0.0),
        attrs(**{wf: "saga_checkout", step: "capture_payment", outcome: "failed"}): (2, 0.0),
    }
    assert delta["squidmesh.step.retries"] == {
        attrs(**{wf: "shipping", step: "label"}): 1,
        attrs(**{wf: "saga_checkout", step: "capture_payment"}): 1,
    }
    assert delta["squidmesh.compensations"] == {
        attrs(**{wf: "saga_checkout", step: "authorize_payment", outcome: "completed"}): 1,
        attrs(**{wf: "saga_checkout", step: "reserve_inventory", outcome: "completed"}): 1,
    }
    assert delta["squidmesh.job.schedule_to_start"] == {}, "only workers claim jobs"


def one_step() -> Workflow:
    wf = Workflow("queued_once", triggers=[manual("go")])

    @wf.step
    def only(ctx: StepContext) -> dict[str, Any]:
        return {"attempt": ctx.attempt}

    wf.chain(only, COMPLETE)
    return wf


@pytest.fixture
def queue_client(database_url: str) -> Iterator[Client]:
    with Client(database_url, [one_step()], executor=DatabaseExecutor()) as client:
        yield client


def test_a_worker_records_schedule_to_start_and_names_the_queue(
    queue_client: Client, telemetry: Telemetry
) -> None:
    before = snapshot(telemetry)
    with Worker(queue_client, poll_interval=0.05, cron=False):
        run = queue_client.start_run("queued_once")
        wait_until(
            lambda: queue_client.inspect_run(run.id).status == "completed",
            timeout=30,
            what="the worker to complete the run",
        )
    delta = changes(before, snapshot(telemetry))
    ((key, (count, seconds)),) = delta["squidmesh.job.schedule_to_start"].items()
    assert key == attrs(**{"squidmesh.queue": "default", "squidmesh.kind": "step"})
    assert count == 1
    assert 0 <= seconds < 30

    trace = run_trace(telemetry.spans(), run.id)
    check_links(trace)
    send = trace.one("send only")
    assert send.attributes["messaging.destination.name"] == "default"
    assert isinstance(send.attributes["messaging.message.id"], str)
    assert trace.one("process only").attributes["squidmesh.outcome"] == "executed"


def logging_workflow() -> Workflow:
    wf = Workflow("logged", triggers=[manual("go")])

    @wf.step
    def book(ctx: StepContext) -> dict[str, Any]:
        ctx.logger.info("booking", extra={"seats": 2})
        return {"booking": "b-1"}

    @book.compensate
    def unbook(ctx: StepContext) -> dict[str, Any]:
        ctx.logger.info("unbooking")
        return {}

    @wf.step
    def pay(ctx: StepContext) -> dict[str, Any]:
        raise ValueError("declined")

    noted = wf.log("noted", message="booking noted")
    wf.chain(book, noted, pay, COMPLETE)
    return wf


def test_log_records_carry_run_workflow_step_and_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="squidmesh_sdk")
    with WorkflowEnvironment([logging_workflow()], observers=[LoggingObserver()]) as env:
        run = env.start_run("logged")
        env.run_until_idle()

    def fields(record: logging.LogRecord, *names: str) -> tuple[Any, ...]:
        return tuple(getattr(record, name, None) for name in names)

    keys = ("run_id", "workflow", "step", "attempt")
    (booking,) = [r for r in caplog.records if r.getMessage() == "booking"]
    assert fields(booking, *keys, "seats") == (run.id, "logged", "book", 1, 2)
    (unbooking,) = [r for r in caplog.records if r.getMessage() == "unbooking"]
    assert fields(unbooking, *keys, "compensating") == (run.id, "logged", "book", 1, True)
    (noted,) = [r for r in caplog.records if r.getMessage() == "booking noted"]
    assert fields(noted, *keys) == (run.id, "logged", "noted", 1)
    (step_failed,) = [r for r in caplog.records if r.getMessage() == "step failed"]
    assert step_failed.name == "squidmesh_sdk.runtime"
    assert step_failed.levelno == logging.WARNING
    assert fields(step_failed, *keys, "event") == (run.id, "logged", "pay", 1, "step_failed")
    started = [r for r in caplog.records if getattr(r, "event", None) == "step_started"]
    assert {(r.levelno, r.step) for r in started} >= {(logging.INFO, "book"), (logging.INFO, "pay")}
    (compensated,) = [r for r in caplog.records if r.getMessage() == "compensation completed"]
    assert fields(compensated, *keys) == (run.id, "logged", "book", 1)
