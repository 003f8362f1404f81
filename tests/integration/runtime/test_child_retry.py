"""``retry_run`` of a parent whose child is still running, while that child finishes."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, NonRetryableError, Workflow, manual
from squidmesh_sdk.store import schema
from squidmesh_sdk.testing import FakeClock
from tests.cli.support import drain

FAILING = [True]

held = Workflow("held", triggers=[manual("go")])
held.chain(held.pause("hold"), COMPLETE)

parent = Workflow("parent_retry", triggers=[manual("go")])


@parent.step
def begin() -> dict[str, Any]:
    return {}


parent.child("sub", workflow="held", on_parent_close="abandon", after=[begin])


@parent.step(after=[begin])
def boom() -> dict[str, Any]:
    if FAILING[0]:
        raise NonRetryableError("boom")
    return {"boom": "fixed"}


def test_a_retry_waits_for_a_child_finishing_meanwhile_and_sees_it_finished(
    database_url: str,
) -> None:
    # The child's last transaction reads the parent as failed and wakes no one; the retry
    # read the child as still running and queued nothing for it. Both committed, the parent
    # waited for good for a child that had finished. The retry now locks the child first.
    FAILING[0] = True
    with Client(database_url, [held, parent], executor=DatabaseExecutor()) as client:
        client.migrate()
        run = client.start_run("parent_retry")
        drain(client)
        assert client.inspect_run(run.id).status == "failed"
        (link,) = client.inspect_run(run.id, include_history=True).children or ()
        assert client.inspect_run(link.child_run_id).status == "paused"
        FAILING[0] = False

        retried: list[Any] = []
        with client.database.engine.connect() as finishing:
            finishing.begin()
            # The child's finishing transaction, not yet committed: it holds the child's row.
            finishing.execute(
                sa.update(schema.runs)
                .where(schema.runs.c.id == uuid.UUID(link.child_run_id))
                .values(status="completed", current_step=None)
            )
            retry = threading.Thread(target=lambda: retried.append(client.retry_run(run.id)))
            retry.start()
            time.sleep(0.5)  # the retry reaches the child meanwhile
            finishing.commit()
            retry.join(timeout=60)
        assert retried, "the retry did not finish"
        drain(client)
        assert client.inspect_run(run.id).status == "completed"


def test_a_retry_of_a_parent_whose_finished_child_was_purged_fails_the_step_saying_so(
    database_url: str,
) -> None:
    # The child ended while its parent was failed (waking no one), and a purge of completed
    # runs took it. retry_run raised RunNotFound for the child's id; now the child step
    # fails, naming what happened.
    FAILING[0] = True
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    with Client(database_url, [held, parent], executor=DatabaseExecutor(), clock=clock) as client:
        client.migrate()
        run = client.start_run("parent_retry")
        drain(client)
        (link,) = client.inspect_run(run.id, include_history=True).children or ()
        client.unblock_run(link.child_run_id)
        drain(client)
        assert client.inspect_run(link.child_run_id).status == "completed"
        assert client.inspect_run(run.id).status == "failed"
        clock.advance(timedelta(days=8))  # past the week a child's start key is kept
        purged = client.purge_runs(older_than=timedelta(days=1), statuses=["completed"])
        assert purged.runs == 1
        FAILING[0] = False
        client.retry_run(run.id)
        drain(client)
        done = client.inspect_run(run.id, include_history=True)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "child_failed"
    assert "no longer exists" in done.last_error["message"]
    assert done.last_error["step"] == "sub"
