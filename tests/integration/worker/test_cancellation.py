"""Cancellation with the database queue's real workers: a run waiting a week is cancelled at
once and its delayed job deleted; cancel, then SIGKILL the step's worker: nothing stays running."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    Retry,
    Run,
    StepContext,
    Worker,
    Workflow,
    manual,
)
from squidmesh_sdk.store import jobs as job_store
from tests.integration.worker.conftest import (
    Spawn,
    attempts_by_step,
    gated_run,
    settled,
    wait_until,
)

WEEK = timedelta(days=7)


def _week_wait() -> Workflow:
    wf = Workflow("week_wait", triggers=[manual("go")])
    hold = wf.wait("hold", duration=WEEK)
    deliver = wf.log("deliver", message="a week later")
    wf.chain(hold, deliver, COMPLETE)
    return wf


def _week_retry() -> Workflow:
    wf = Workflow("week_retry", triggers=[manual("go")])

    @wf.step(retry=Retry(max_attempts=2, backoff=Retry.fixed(WEEK)))
    def call_gateway(ctx: StepContext) -> dict[str, Any]:
        raise ConnectionError(f"gateway down (attempt {ctx.attempt})")

    wf.chain(call_gateway, COMPLETE)
    return wf


def _jobs(client: Client, run_id: str) -> list[job_store.Job]:
    with client.database.read() as connection:
        return job_store.list_jobs(connection, run_id=run_id)


def _parked_for_a_week(client: Client, run_id: str) -> bool:
    """The run's only job is queued about a week ahead: the worker has nothing to do for it."""
    jobs = _jobs(client, run_id)
    soon = client.clock.now() + timedelta(days=6)
    return len(jobs) == 1 and jobs[0].status == "queued" and jobs[0].run_at > soon


def _nothing_running(run: Run) -> bool:
    step_runs = run.step_runs or ()
    attempts = [a for sr in step_runs for a in sr.attempts or ()]
    return all(sr.status != "running" for sr in step_runs) and all(
        a.status != "running" for a in attempts
    )


@pytest.mark.parametrize(
    ("workflow", "parked_as"), [("week_wait", "running"), ("week_retry", "retrying")]
)
def test_a_run_parked_for_a_week_is_cancelled_within_a_second(
    database_url: str, workflow: str, parked_as: str
) -> None:
    with (
        Client(database_url, [_week_wait(), _week_retry()], executor=DatabaseExecutor()) as client,
        Worker(client, concurrency=2, poll_interval=0.05),
    ):
        run = client.start_run(workflow)
        wait_until(lambda: _parked_for_a_week(client, run.id), what="the run to park")
        assert client.inspect_run(run.id).status == parked_as
        began = time.monotonic()
        cancelled = client.cancel_run(run.id)
        assert cancelled.status == "cancelled"
        assert client.inspect_run(run.id).status == "cancelled"
        assert time.monotonic() - began < 1.0
        assert _jobs(client, run.id) == []  # deleted with the cancellation, not a week later
        done = client.inspect_run(run.id, include_history=True)
        assert _nothing_running(done)
        explanation = client.explain_run(run.id)
        assert (explanation.reason, explanation.next_actions) == ("cancelled", ("replay_run",))


def test_cancel_then_sigkill_the_steps_worker_leaves_nothing_running(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    run, _gate, started = gated_run(client, tmp_path)  # the gate never opens
    doomed = spawn_worker(database_url, lease=1.0)
    wait_until(started.exists, what="the blocked step to start in the first worker")
    assert client.cancel_run(run.id).status == "cancelling"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    spawn_worker(database_url, lease=1.0)  # rescues the job once the dead worker's lease ends
    wait_until(settled(client, [run]), what="the rescuer to finish the cancellation")
    done = client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert _nothing_running(done)
    assert attempts_by_step(client, run.id) == {
        "before": ["completed"],
        "blocked": ["abandoned"],
    }
    blocked = done.step_run("blocked")
    assert blocked is not None
    assert blocked.status == "failed"
    assert blocked.last_error is not None
    assert blocked.last_error["kind"] == "cancelled"
    attempt = (blocked.attempts or ())[0]
    assert attempt.error is not None
    assert attempt.error["code"] == "worker_lost"
    assert _jobs(client, run.id) == []
    assert client.explain_run(run.id).reason == "cancelled"


def test_a_cancelling_run_whose_worker_died_is_closed_by_a_worker_without_its_version(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    run, _gate, started = gated_run(client, tmp_path)  # the gate never opens
    doomed = spawn_worker(database_url, lease=1.0)
    wait_until(started.exists, what="the blocked step to start in the first worker")
    assert client.cancel_run(run.id).status == "cancelling"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    # The deploy that followed changed the workflow: the only worker left holds another version
    # of it. Closing the cancelled run needs no definition, so that worker finishes it.
    newer = Workflow("gated", triggers=[manual("go")], version="2")

    @newer.step
    def redesigned() -> dict[str, str]:
        return {}

    newer.chain(redesigned, COMPLETE)
    with Client(database_url, [newer], executor=DatabaseExecutor()) as deployed:
        explanation = deployed.explain_run(run.id)
        assert (explanation.reason, explanation.next_actions) == (
            "cancelling",
            ("wait_for_cancellation",),
        )
        with Worker(deployed, lease=1.0, poll_interval=0.05):
            wait_until(settled(deployed, [run]), what="the new worker to finish the cancellation")
        done = deployed.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert _nothing_running(done)
    assert attempts_by_step(client, run.id) == {"before": ["completed"], "blocked": ["abandoned"]}
    assert _jobs(client, run.id) == []


def test_cancel_then_the_step_returns_closes_it_and_runs_nothing_more(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    run, gate, started = gated_run(client, tmp_path)
    spawn_worker(database_url, lease=1.0)
    wait_until(started.exists, what="the blocked step to start")
    assert client.cancel_run(run.id).status == "cancelling"
    gate.touch()
    wait_until(settled(client, [run]), what="the step to return")
    done = client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    assert _nothing_running(done)
    assert attempts_by_step(client, run.id) == {"before": ["completed"], "blocked": ["completed"]}
    assert done.context.get("blocked") == "passed"  # the step's result is kept
    assert _jobs(client, run.id) == []
