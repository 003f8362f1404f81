"""A step claimed by the transaction that leases its job starts exactly as a delivery would,
and a step that does not simply start is left to the delivery, with nothing written."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from squidmesh_sdk import COMPLETE, Workflow, manual
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import claiming, execution
from squidmesh_sdk.runtime.events import StepStarted
from squidmesh_sdk.store import step_run_reads
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv


def _workflow() -> Workflow:
    wf = Workflow("claimed", triggers=[manual("go")])

    @wf.step
    def first() -> dict[str, Any]:
        return {"first": 1}

    wf.chain(first, COMPLETE)
    return wf


def _claim(env: WorkflowEnvironment, run_id: str, step: str) -> object | None:
    runtime = env.client.runtime
    with runtime.transaction() as tx:
        return claiming.claim_step(runtime, tx, run_id, step)


def test_a_claimed_step_is_performed_without_being_claimed_again(make_env: MakeEnv) -> None:
    env = make_env(_workflow(), run_immediately=False)
    run = env.start_run("claimed")
    claim = _claim(env, run.id, "first")
    assert claim is not None
    # Committed with the claim, reported by the delivery (inside its ``process`` span).
    assert env.events.of_type(StepStarted) == []
    outcome = execution.execute_step(
        env.client.runtime, run.id, "first", delivery=Delivery(claim=claim)
    )
    assert outcome == "executed"
    finished = env.client.inspect_run(run.id, include_history=True)
    assert finished.status == "completed"
    step_run = finished.step_run("first")
    assert step_run is not None
    assert [a.number for a in step_run.attempts or ()] == [1]
    assert [e.step for e in env.events.of_type(StepStarted)] == ["first"]


@pytest.mark.parametrize(
    "case", ["cancelled", "cancelling", "unknown_step", "unknown_run", "started", "finished"]
)
def test_a_step_that_does_not_simply_start_is_left_to_its_delivery(
    make_env: MakeEnv, case: str
) -> None:
    env = make_env(_workflow(), run_immediately=False)
    run = env.start_run("claimed")
    run_id, step = run.id, "first"
    if case == "cancelled":
        env.client.cancel_run(run.id)
    elif case == "unknown_step":
        step = "nope"
    elif case == "unknown_run":
        run_id = "0190e3a4-0000-7000-8000-000000000000"
    else:
        claim = _claim(env, run.id, "first")
        assert claim is not None
        if case == "cancelling":
            env.client.cancel_run(run.id)
        elif case == "finished":
            execution.execute_step(
                env.client.runtime, run.id, "first", delivery=Delivery(claim=claim)
            )
    before = len(env.events.events)
    status = env.client.inspect_run(run.id).status
    assert _claim(env, run_id, step) is None
    # Nothing written, nothing reported: the delivery will decide, as it always did.
    assert len(env.events.events) == before
    assert env.client.inspect_run(run.id).status == status
    with env.client.runtime.database.read() as connection:
        step_run = step_run_reads.get_step_run(connection, run.id, "first")
    expected = {"started": "running", "cancelling": "running", "finished": "completed"}
    assert (step_run.status if step_run else None) == expected.get(case)


def test_a_result_that_comes_after_a_takeover_is_discarded(make_env: MakeEnv) -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []
    wf = Workflow("taken_over", triggers=[manual("go")])

    @wf.step
    def first() -> dict[str, Any]:
        calls.append(len(calls) + 1)
        if len(calls) == 1:  # the first delivery is slow; it gets taken over meanwhile
            started.set()
            assert release.wait(timeout=60), "the test never released the step"
        return {"first": len(calls)}

    wf.chain(first, COMPLETE)
    env = make_env(wf, run_immediately=False)
    run = env.start_run("taken_over")
    ((_, job),) = env.executor.pending
    outcomes: list[str] = []
    slow = threading.Thread(target=lambda: outcomes.append(env.client.perform(job)))
    slow.start()
    assert started.wait(timeout=60)
    # Its worker is declared lost: another delivery takes the step over and finishes it.
    runtime = env.client.runtime
    taken = execution.execute_step(runtime, run.id, "first", delivery=Delivery(reclaim=True))
    assert taken == "executed"
    release.set()
    slow.join(timeout=60)
    assert outcomes == ["skipped"]
    finished = env.client.inspect_run(run.id, include_history=True)
    assert (finished.status, finished.context) == ("completed", {"first": 2})
    step_run = finished.step_run("first")
    assert step_run is not None
    assert [a.status for a in step_run.attempts or ()] == ["abandoned", "completed"]
