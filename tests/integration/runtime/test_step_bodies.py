"""Step bodies: inputs bound and validated, outputs checked, transactions, async, built-ins."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, TypedDict

import pytest
import sqlalchemy as sa

from samples import local_ledger_checkout
from squidmesh_sdk import COMPLETE, Retry, StepContext, Workflow, manual
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv


@dataclasses.dataclass
class Parcel:
    weight_grams: int
    tags: tuple[str, ...]


class Label(TypedDict):
    label: str


def single_step(body: Any, **options: Any) -> Workflow:
    wf = Workflow("single", triggers=[manual("go", payload=None)])
    step = wf.step(**options)(body) if options else wf.step(body)
    wf.chain(step, COMPLETE)
    return wf


def _failed_error(env: WorkflowEnvironment, run_id: str) -> dict[str, Any]:
    run = env.client.inspect_run(run_id, include_history=True)
    assert run.status == "failed"
    assert run.last_error is not None
    step_run = run.step_runs[0] if run.step_runs else None
    assert step_run is not None
    assert [a.status for a in step_run.attempts or ()] == ["failed"]
    return dict(run.last_error)


def test_missing_and_invalid_inputs_fail_the_step_without_retry(make_env: MakeEnv) -> None:
    def needs_inputs(customer_id: int, region: str) -> None:
        raise AssertionError("must not be called")

    wf = Workflow("single", triggers=[manual("go", payload=None)])
    step = wf.step(retry=Retry(max_attempts=3))(needs_inputs)
    first = wf.step(lambda: {"customer_id": "not-a-number"}, name="first")
    wf.chain(first, step, COMPLETE)
    env = make_env(wf)
    run = env.start_run("single")
    error = _failed_error_at(env, run.id, "needs_inputs")
    assert error["type"] == "squidmesh_sdk.errors.StepInputError"
    assert error["retryable"] is False
    assert (error["kind"], error["code"]) == ("input_validation", "step_input_invalid")
    assert error["details"]["missing_inputs"] == ["region"]
    assert list(error["details"]["invalid_inputs"]) == ["customer_id"]


def _failed_error_at(env: WorkflowEnvironment, run_id: str, step: str) -> dict[str, Any]:
    run = env.client.inspect_run(run_id, include_history=True)
    assert (run.status, run.current_step) == ("failed", step)
    step_run = run.step_run(step)
    assert step_run is not None
    assert [a.status for a in step_run.attempts or ()] == ["failed"]
    assert run.last_error is not None
    return dict(run.last_error)


@pytest.mark.parametrize(
    ("returned", "problem"),
    [
        (42, "returned int; return a mapping, a pydantic model, a dataclass or None"),
        ({1: "x"}, "non-string keys"),
        ({"when": object()}, "JSON cannot hold"),
    ],
)
def test_a_step_returning_something_unstorable_fails_without_retry(
    make_env: MakeEnv, returned: object, problem: str
) -> None:
    def bad() -> Any:
        return returned

    env = make_env(single_step(bad, retry=Retry(max_attempts=3)))
    run = env.start_run("single")
    error = _failed_error(env, run.id)
    assert error["type"] == "squidmesh_sdk.errors.StepOutputError"
    assert problem in error["message"]


def test_none_output_merges_nothing_and_json_values_are_normalised(make_env: MakeEnv) -> None:
    import datetime as dt

    wf = Workflow("single", triggers=[manual("go", payload=None)])

    @wf.step
    def nothing() -> None:
        return None

    @wf.step
    def when() -> dict[str, Any]:
        return {"at": dt.date(2026, 1, 2), "tags": ("a", "b")}

    wf.chain(nothing, when, COMPLETE)
    env = make_env(wf)
    run = env.start_run("single")
    assert env.client.inspect_run(run.id).context == {"at": "2026-01-02", "tags": ["a", "b"]}


def test_typed_returns_flow_to_the_parameters_the_compiler_checked(make_env: MakeEnv) -> None:
    wf = Workflow("single", triggers=[manual("go", payload=None)])

    @wf.step
    def weigh() -> Parcel:  # a dataclass: merged as the mapping of its fields
        return Parcel(weight_grams=1200, tags=("fragile",))

    @wf.step
    def print_label(weight_grams: int, tags: list[str]) -> Label:
        return {"label": f"{weight_grams}g {','.join(tags)}"}

    @wf.step(output="shipment")
    def ship(label: str) -> None:
        return None

    wf.chain(weigh, print_label, ship, COMPLETE)
    env = make_env(wf)
    run = env.start_run("single")
    assert env.client.inspect_run(run.id).context == {
        "weight_grams": 1200,
        "tags": ["fragile"],
        "label": "1200g fragile",
        "shipment": {},
    }


def test_async_steps_run_and_their_exceptions_are_recorded(make_env: MakeEnv) -> None:
    async def boom(ctx: StepContext) -> dict[str, Any]:
        raise ValueError(f"async failure in {ctx.step}")

    env = make_env(single_step(boom))
    run = env.start_run("single")
    error = _failed_error(env, run.id)
    assert error["message"] == "async failure in boom"
    assert error["type"] == "builtins.ValueError"


def test_the_step_logger_carries_run_fields(
    make_env: MakeEnv, caplog: pytest.LogCaptureFixture
) -> None:
    def chatty(ctx: StepContext) -> None:
        ctx.logger.info("charging")

    env = make_env(single_step(chatty))
    with caplog.at_level(logging.INFO, logger="squidmesh_sdk.step"):
        run = env.start_run("single")
    (record,) = [r for r in caplog.records if r.getMessage() == "charging"]
    assert (record.run_id, record.step, record.attempt) == (run.id, "chatty", 1)  # type: ignore[attr-defined]


def test_log_and_wait_builtins(make_env: MakeEnv, caplog: pytest.LogCaptureFixture) -> None:
    wf = Workflow("builtins", triggers=[manual("go")])
    announce = wf.log("announce", message="digest ready", level="warning")
    pause = wf.wait("cool_down", duration=60)
    finish = wf.log("finish", message="done")
    wf.chain(announce, pause, finish, COMPLETE)
    env = make_env(wf)
    with caplog.at_level(logging.INFO, logger="squidmesh_sdk.step"):
        run = env.start_run("builtins")
    assert [r.getMessage() for r in caplog.records] == ["digest ready"]
    assert caplog.records[0].levelno == logging.WARNING
    waiting = env.client.inspect_run(run.id)
    assert (waiting.status, waiting.current_step) == ("running", "cool_down")
    assert env.client.explain_run(run.id).reason == "waiting_for_timer"
    assert env.advance(59) == 0
    assert env.advance(1) == 2  # the timer's job, then the step after it
    assert env.client.inspect_run(run.id).status == "completed"


@pytest.fixture
def ledger_env(make_env: MakeEnv, database_url: str) -> WorkflowEnvironment:
    engine = sa.create_engine(database_url)
    local_ledger_checkout.metadata.create_all(engine)
    engine.dispose()
    return make_env(local_ledger_checkout.workflow)


def _ledger_entries(env: WorkflowEnvironment) -> list[str]:
    with env.client.database.read() as connection:
        table = local_ledger_checkout.ledger_entries
        return list(connection.scalars(sa.select(table.c.entry).order_by(table.c.id)))


def test_a_transaction_step_commits_its_writes_with_its_result(
    ledger_env: WorkflowEnvironment,
) -> None:
    run = ledger_env.start_run("local_ledger_checkout", {"account_id": "acct-1"})
    done = ledger_env.client.inspect_run(run.id)
    assert done.status == "completed"
    assert done.context == {"local_ledger": {"status": "committed", "entries": 2}}
    assert _ledger_entries(ledger_env) == ["reserve", "capture"]


def test_a_transaction_step_rolls_back_its_writes_when_it_fails(
    ledger_env: WorkflowEnvironment,
) -> None:
    run = ledger_env.start_run(
        "local_ledger_checkout", {"account_id": "acct-2", "fail_after_reserve": True}
    )
    error = _failed_error(ledger_env, run.id)
    assert error["message"] == "local ledger capture failed"
    assert error["retryable"] is False
    assert _ledger_entries(ledger_env) == []


def test_an_async_step_past_its_timeout_is_cancelled_and_retried(make_env: MakeEnv) -> None:
    import asyncio

    calls: list[int] = []

    async def slow(ctx: StepContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.sleep(30)
        return {"finished_on": ctx.attempt}

    env = make_env(single_step(slow, timeout=0.05, retry=Retry(max_attempts=2)))
    run = env.start_run("single")
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context == {"finished_on": 2}
    step_run = done.step_run("slow")
    assert step_run is not None
    first = (step_run.attempts or ())[0]
    assert first.error is not None
    assert first.error["type"] == "squidmesh_sdk.errors.StepTimeout"
    assert first.error["retryable"] is True
    assert calls == [1, 2]
