"""Dependency graphs: roots fan out together, a join waits for all of its dependencies."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

from samples import dependency_recovery
from squidmesh_sdk import DispatchFailed, Workflow, manual
from squidmesh_sdk.store import schema
from tests.integration.runtime.conftest import MakeEnv


def test_roots_are_dispatched_together_and_the_join_runs_after_both(make_env: MakeEnv) -> None:
    env = make_env(dependency_recovery.workflow, run_immediately=False)
    payload = {"account_id": "acct-1", "invoice_id": "inv-1"}
    run = env.start_run("dependency_recovery", payload)
    assert run.current_step is None
    assert sorted(job["step"] for _, job in env.executor.pending) == [
        "load_account",
        "load_invoice",
    ]
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.current_step is None
    steps = [(sr.step, sr.status) for sr in done.step_runs or ()]
    assert sorted(steps[:2]) == [("load_account", "completed"), ("load_invoice", "completed")]
    assert steps[2] == ("prepare_notification", "completed")


def test_a_join_sees_its_dependencies_and_roots_see_only_the_payload(make_env: MakeEnv) -> None:
    seen: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    wf = Workflow("fan", triggers=[manual("go")])

    @wf.step
    def left(**state: Any) -> dict[str, Any]:
        with lock:
            seen["left"] = dict(state)
        return {"left": "L"}

    @wf.step
    def right(**state: Any) -> dict[str, Any]:
        with lock:
            seen["right"] = dict(state)
        return {"right": "R"}

    @wf.step(after=[left, right])
    def join(left: str, right: str) -> dict[str, Any]:
        return {"joined": left + right}

    env = make_env(wf, run_immediately=False)
    run = env.start_run("fan")
    env.run_due()
    assert seen == {"left": {}, "right": {}}
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context == {"left": "L", "right": "R", "joined": "LR"}
    join_run = done.step_run("join")
    assert join_run is not None
    assert join_run.input == {"left": "L", "right": "R"}


def test_a_failed_root_fails_the_run_and_the_join_never_runs(make_env: MakeEnv) -> None:
    calls: list[str] = []
    wf = Workflow("fan_fail", triggers=[manual("go")])

    @wf.step
    def good() -> dict[str, Any]:
        calls.append("good")
        return {"good": 1}

    @wf.step
    def bad() -> None:
        raise ValueError("bad root")

    @wf.step(after=[good, bad])
    def join() -> None:
        calls.append("join")

    env = make_env(wf, run_immediately=False)
    run = env.start_run("fan_fail")
    env.run_until_idle()
    failed = env.client.inspect_run(run.id, include_history=True)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["message"] == "bad root"
    assert "join" not in calls
    assert failed.step_run("join") is None


def test_a_refused_fan_out_leaves_no_pending_rows(make_env: MakeEnv) -> None:
    env = make_env(dependency_recovery.workflow)
    env.executor.fail_next()
    payload = {"account_id": "acct-1", "invoice_id": "inv-1"}
    with pytest.raises(DispatchFailed):
        env.start_run("dependency_recovery", payload)
    assert env.client.list_runs() == []
    with env.client.database.read() as connection:
        rows = connection.scalar(sa.select(sa.func.count()).select_from(schema.step_runs))
    assert rows == 0
