"""Child runs with real worker processes: the parent goes on when its child ends, even if the
worker running the child is killed."""

from __future__ import annotations

import signal
from pathlib import Path

from squidmesh_sdk import Client
from squidmesh_sdk.store import jobs as job_store
from tests.integration.worker.conftest import Spawn, attempts_by_step, settled, wait_until


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
