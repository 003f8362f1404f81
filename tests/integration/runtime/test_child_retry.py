"""``retry_run`` of a parent whose child is still running, while that child finishes."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, NonRetryableError, Workflow, manual
from squidmesh_sdk.store import schema
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
