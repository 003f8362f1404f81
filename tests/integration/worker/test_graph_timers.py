"""Timers, deadlines, loops and map steps on the database queue with real workers.

Timers are jobs in the database: a worker killed while a run waits, or no worker at all when a
timer or deadline comes due, only delays them until a worker runs again.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, Retry, Worker, Workflow, manual
from squidmesh_sdk.store import jobs as job_store
from tests.integration.worker.conftest import Spawn, settled, wait_until, workers_up


def _where(client: Client, run_id: str) -> tuple[str, str | None]:
    run = client.inspect_run(run_id)
    return run.status, run.current_step


def _jobs_left(client: Client, run_id: str) -> int:
    with client.database.read() as connection:
        return len(job_store.list_jobs(connection, run_id=run_id))


def test_computed_waits_and_an_approval_timeout_survive_a_killed_worker(
    client: Client, database_url: str, spawn_worker: Spawn
) -> None:
    until = (datetime.now(UTC) + timedelta(seconds=10)).isoformat()  # margin for slow starts
    run = client.start_run("timers", {"delay": 1.5, "until": until})
    doomed = spawn_worker(database_url)
    wait_until(
        lambda: client.explain_run(run.id).reason == "waiting_for_timer", what="the wait to start"
    )
    assert client.inspect_run(run.id).current_step == "hold"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    time.sleep(2.0)  # the wait's time passes with no worker up
    assert client.inspect_run(run.id).current_step == "hold"
    restarted = spawn_worker(database_url)
    wait_until(
        lambda: client.inspect_run(run.id).current_step == "hold_until", what="the second wait"
    )
    restarted.send_signal(signal.SIGKILL)  # killed again, during the wait until a datetime
    restarted.wait(timeout=30)
    spawn_worker(database_url)
    # The timers fire late, the approval then waits 1.5 s, and nobody decides: timeout route.
    wait_until(settled(client, [run]), what="the timeout route to finish the run")
    done = client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert {sr.step: sr.status for sr in done.step_runs or ()} == {
        "hold": "completed",
        "hold_until": "completed",
        "gate": "failed",
        "late": "completed",
    }
    assert [e.type for e in done.events or ()].count("timed_out") == 1
    assert _jobs_left(client, run.id) == 0


def test_a_deadline_passed_while_no_worker_ran_fails_the_run_once(
    client: Client, database_url: str, spawn_worker: Spawn
) -> None:
    doomed = spawn_worker(database_url)
    workers_up(client)
    run = client.start_run("deadline")
    wait_until(lambda: client.inspect_run(run.id).status == "paused", what="the approval")
    assert client.explain_run(run.id).details["deadline_at"]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    time.sleep(2.0)  # the deadline passes with no worker up
    assert client.inspect_run(run.id).status == "paused"
    spawn_worker(database_url)
    spawn_worker(database_url)  # two workers: still one deadline failure
    wait_until(settled(client, [run]), what="the deadline to fail the run")
    done = client.inspect_run(run.id, include_history=True)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "deadline_exceeded"
    assert [e.type for e in done.events or ()].count("deadline_exceeded") == 1
    assert client.explain_run(run.id).reason == "deadline_exceeded"
    assert _jobs_left(client, run.id) == 0


def test_a_map_never_runs_more_elements_at_once_than_max_parallel(database_url: str) -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]
    wf = Workflow("parallel_map", triggers=[manual("go")])

    @wf.step
    def plan() -> dict[str, Any]:
        return {"items": list(range(12))}

    @wf.step(map_over="items", max_parallel=2, retry=Retry(max_attempts=2))
    def work(item: int) -> dict[str, Any]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return {"done": item}

    wf.chain(plan, work, COMPLETE)
    with Client(database_url, [wf], executor=DatabaseExecutor()) as client:
        client.migrate()
        run = client.start_run("parallel_map")
        with Worker(client, concurrency=4, poll_interval=0.02):
            wait_until(settled(client, [run]), what="the map to finish")
        done = client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["work"] == [{"done": n} for n in range(12)]
    # Four worker threads, but never more than two elements at once; and two did run together.
    assert peak[0] == 2


def test_a_rejected_review_loops_back_on_a_worker(database_url: str) -> None:
    wf = Workflow("review_on_worker", triggers=[manual("go")])

    @wf.step
    def draft(revision: int = 0) -> dict[str, Any]:
        return {"revision": revision + 1}

    review = wf.approval("review")
    publish = wf.log("publish", message="published")
    wf.chain(draft, review, publish, COMPLETE)
    wf.transition(review, on="error", to=draft)
    with Client(database_url, [wf], executor=DatabaseExecutor()) as client:
        client.migrate()
        run = client.start_run("review_on_worker")
        with Worker(client, concurrency=2, poll_interval=0.02):
            wait_until(lambda: client.inspect_run(run.id).status == "paused", what="review")
            client.reject_run(run.id, actor="editor")
            wait_until(
                lambda: (
                    (client.inspect_run(run.id).status, client.inspect_run(run.id).current_step)
                    == ("paused", "review@2")
                ),
                what="the second review",
            )
            client.approve_run(run.id, actor="editor")
            wait_until(settled(client, [run]), what="the run to finish")
        done = client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["revision"] == 2
    assert [sr.step for sr in done.step_runs or ()] == [
        "draft",
        "review",
        "draft@2",
        "review@2",
        "publish",
    ]
