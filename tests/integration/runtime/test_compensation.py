"""Saga rollback after terminal failure: reverse completion order, every result recorded."""

from __future__ import annotations

from typing import Any

from samples import saga_checkout
from squidmesh_sdk import COMPLETE, Workflow, manual
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv


def _compensation(env: WorkflowEnvironment, run_id: str, step: str) -> dict[str, Any]:
    run = env.client.inspect_run(run_id, include_history=True)
    step_run = run.step_run(step)
    assert step_run is not None
    assert step_run.recovery is not None
    return dict(step_run.recovery["compensation"])


def test_a_failed_saga_compensates_completed_steps_newest_first(make_env: MakeEnv) -> None:
    env = make_env(saga_checkout.workflow)
    run = env.start_run("saga_checkout", {"order_id": "o-1", "amount_cents": 900})
    env.run_until_idle()
    failed = env.client.inspect_run(run.id, include_history=True)
    assert (failed.status, failed.current_step) == ("failed", "capture_payment")
    assert failed.last_error is not None
    assert failed.last_error["message"] == "capture declined for auth_o-1"
    voided = _compensation(env, run.id, "authorize_payment")
    released = _compensation(env, run.id, "reserve_inventory")
    assert voided["status"] == released["status"] == "completed"
    assert voided["output"] == {"voided": "auth_o-1"}
    assert released["output"] == {
        "released": "res_o-1",
        "after": "capture declined for auth_o-1",
    }
    assert voided["callback"].endswith("void_payment_authorization")
    assert voided["completed_at"] <= released["started_at"]
    # The forward steps keep their own status and output.
    assert [(sr.step, sr.status) for sr in failed.step_runs or ()] == [
        ("reserve_inventory", "completed"),
        ("authorize_payment", "completed"),
        ("capture_payment", "failed"),
    ]
    # Redelivering the compensation job runs nothing twice.
    assert env.client.perform({"kind": "compensation", "run_id": run.id}) == "compensated"
    assert _compensation(env, run.id, "authorize_payment") == voided


def test_a_failing_callback_is_recorded_and_the_others_still_run(make_env: MakeEnv) -> None:
    calls: list[str] = []
    wf = Workflow("saga", triggers=[manual("go")])

    @wf.step
    def first() -> dict[str, Any]:
        return {"a": 1}

    @first.compensate
    def undo_first() -> None:
        calls.append("undo_first")

    @wf.step
    def second() -> dict[str, Any]:
        return {"b": 2}

    @second.compensate
    def undo_second() -> None:
        calls.append("undo_second")
        raise RuntimeError("cannot undo second")

    @wf.step
    def third() -> None:
        raise ValueError("third broke")

    wf.chain(first, second, third, COMPLETE)
    env = make_env(wf)
    run = env.start_run("saga")
    assert calls == ["undo_second", "undo_first"]
    failed = env.client.inspect_run(run.id)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["kind"] == "compensation_failed"
    assert failed.last_error["message"] == "workflow step failed and compensation failed"
    assert failed.last_error["step"] == "third"
    assert failed.last_error["cause"]["kind"] == "step_error"
    assert failed.last_error["cause"]["message"] == "third broke"
    (failure,) = failed.last_error["details"]["compensation_failures"]
    assert (failure["kind"], failure["step"]) == ("step_error", "second")
    assert failure["message"] == "cannot undo second"
    assert _compensation(env, run.id, "second")["status"] == "failed"
    assert _compensation(env, run.id, "first")["status"] == "completed"


def test_compensation_of_a_run_that_did_not_fail_is_skipped(make_env: MakeEnv) -> None:
    env = make_env(saga_checkout.workflow, run_immediately=False)
    run = env.start_run("saga_checkout", {"order_id": "o-2", "amount_cents": 1})
    assert env.client.perform({"kind": "compensation", "run_id": run.id}) == "skipped"


def test_an_error_route_does_not_trigger_saga_rollback(make_env: MakeEnv) -> None:
    calls: list[str] = []
    wf = Workflow("routed", triggers=[manual("go")])

    @wf.step
    def first() -> None:
        return None

    @first.compensate
    def undo_first() -> None:
        calls.append("undo")

    @wf.step
    def second() -> None:
        raise ValueError("nope")

    @wf.step
    def fallback() -> None:
        return None

    wf.chain(first, second, COMPLETE)
    wf.transition(second, on="error", to=fallback)
    wf.transition(fallback, on="ok", to=COMPLETE)
    env = make_env(wf)
    run = env.start_run("routed")
    assert env.client.inspect_run(run.id).status == "completed"
    assert calls == []


def test_a_refused_compensation_dispatch_still_fails_the_run_and_says_why(
    make_env: MakeEnv,
) -> None:
    env = make_env(saga_checkout.workflow)
    env.executor.fail_next(kind="compensation")
    run = env.start_run("saga_checkout", {"order_id": "o-3", "amount_cents": 1})
    env.run_until_idle()
    failed = env.client.inspect_run(run.id)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["message"] == "capture declined for auth_o-3"
    assert failed.last_error["details"]["compensation_dispatch"] == (
        "ConnectionError: executor unavailable"
    )
    assert [job["kind"] for job in env.executor.dispatched].count("compensation") == 0
