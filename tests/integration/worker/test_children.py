"""Child runs with real worker processes: the parent goes on when its child ends, even if the
worker running the child is killed."""

from __future__ import annotations

import signal
from pathlib import Path

from squidmesh_sdk import Client
from squidmesh_sdk.store import jobs as job_store
from tests.integration.worker.conftest import (
    Spawn,
    attempts_by_step,
    settled,
    wait_until,
    workers_up,
)


def test_a_parent_goes_on_after_its_child_survives_a_killed_worker(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    parent = client.start_run("child_parent", {"gate": str(gate), "started": str(started)})
    doomed = spawn_worker(database_url, lease=1.0)
    wait_until(started.exists, what="the child's step to start in the first worker")
    (child,) = client.inspect_run(parent.id, include_history=True).children or ()
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    gate.touch()
    spawn_worker(database_url, lease=1.0)
    wait_until(settled(client, [parent]), what="the second worker to finish both runs")
    done = client.inspect_run(parent.id, include_history=True)
    assert done.status == "completed"
    assert done.context["reported"] == "done"
    assert [c.status for c in done.children or ()] == ["completed"]
    assert attempts_by_step(client, child.child_run_id)["blocked"] == ["abandoned", "completed"]
    assert len(client.list_runs(workflow="gated_child")) == 1
    with client.database.read() as connection:
        assert job_store.list_jobs(connection) == []


def test_a_parent_failing_on_its_deadline_cancels_its_child_across_workers(
    client: Client, database_url: str, spawn_worker: Spawn, tmp_path: Path
) -> None:
    gate, started = tmp_path / "gate", tmp_path / "started"
    spawn_worker(database_url, lease=1.0)
    spawn_worker(database_url, lease=1.0)
    workers_up(client)
    parent = client.start_run("child_deadline", {"gate": str(gate), "started": str(started)})
    wait_until(started.exists, what="the child's step to start")
    (link,) = client.inspect_run(parent.id, include_history=True).children or ()

    def parent_failed() -> bool:
        return client.inspect_run(parent.id).status == "failed"

    wait_until(parent_failed, what="the parent's deadline")
    # The deadline's transaction cancelled the child: its body still runs, so it is cancelling.
    child = client.inspect_run(link.child_run_id)
    assert child.status == "cancelling"
    explained = client.explain_run(link.child_run_id)
    assert (explained.reason, explained.details["running_steps"]) == ("cancelling", ["blocked"])
    gate.touch()
    wait_until(settled(client, [parent, child]), what="the child's cancellation to finish")
    done = client.inspect_run(link.child_run_id, include_history=True)
    assert done.status == "cancelled"
    (cancel,) = [e for e in done.events or () if e.type == "cancelled"]
    assert (cancel.actor, cancel.comment) == ({"parent_run_id": parent.id}, "its parent run failed")
    failed = client.inspect_run(parent.id, include_history=True)
    assert failed.last_error is not None
    assert failed.last_error["code"] == "deadline_exceeded"
    (closed,) = [e for e in failed.events or () if e.type == "child_cancelled"]
    assert closed.metadata is not None
    assert (closed.step, closed.metadata["child_status"]) == ("sub", "cancelling")
    explanation = client.explain_run(parent.id)
    assert explanation.reason == "deadline_exceeded"
    assert explanation.details["closed_children"][0]["child_run_id"] == link.child_run_id
    assert client.explain_run(link.child_run_id).details["cancelled_by_parent"] == parent.id
    with client.database.read() as connection:
        assert job_store.list_jobs(connection) == []
