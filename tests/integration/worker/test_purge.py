"""Worker(purge_after=...): workers purge old finished runs, one at a time, once per interval."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, Run, Worker
from squidmesh_sdk.store import schema
from tests.integration.worker.conftest import settled, wait_until

MONTH = timedelta(days=30)


def _finished_runs(client: Client, count: int) -> list[Run]:
    runs = [client.start_run("one_step") for _ in range(count)]
    with Worker(client, poll_interval=0.05):
        wait_until(settled(client, runs), what="the runs to finish")
    return runs


def _age(client: Client, runs: list[Run], by: timedelta) -> None:
    """Make ``runs`` look created and last changed ``by`` ago."""
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.id.in_([uuid.UUID(run.id) for run in runs]))
            .values(inserted_at=tx.now - by, updated_at=tx.now - by)
        )


def _pending(client: Client) -> Run:
    """An old run that has not started: its first job is not due for a year."""
    run = client.start_run("one_step")
    _age(client, [run], 2 * MONTH)
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.jobs)
            .where(schema.jobs.c.run_id == uuid.UUID(run.id))
            .values(run_at=tx.now + 12 * MONTH)
        )
    return run


def _left(client: Client) -> set[str]:
    return {run.id for run in client.list_runs(limit=100)}


def _purges(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "periodic purge done"]


def test_workers_purge_old_finished_runs_one_at_a_time(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="squidmesh_sdk.worker")
    old = _finished_runs(client, 3)
    recent = _finished_runs(client, 1)
    _age(client, old, 31 * timedelta(days=1))
    waiting = _pending(client)

    workers = [Worker(client, poll_interval=0.05, purge_after=MONTH, cron=False) for _ in "ab"]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: _left(client) == {recent[0].id, waiting.id}, what="the purge")
        time.sleep(0.3)  # both workers have looked by now
    finally:
        for worker in workers:
            worker.stop()

    # Both workers looked; within the interval (5 minutes) only one of them purged.
    (record,) = _purges(caplog)
    assert record.runs == 3  # type: ignore[attr-defined]
    assert record.worker in {w.name for w in workers}  # type: ignore[attr-defined]
    with client.database.read() as connection:
        task = connection.execute(sa.select(schema.maintenance)).one()
    assert task.task == "purge"


def test_the_next_purge_comes_after_the_interval(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="squidmesh_sdk.worker")
    first = _finished_runs(client, 1)
    _age(client, first, 2 * MONTH)
    worker = Worker(client, poll_interval=0.05, purge_after=MONTH, purge_interval=0.3)
    with worker:
        wait_until(lambda: not _left(client), what="the first purge")
        later = _finished_runs(client, 2)
        _age(client, later, 2 * MONTH)
        wait_until(lambda: not _left(client), what="the next purge")
    assert sum(r.runs for r in _purges(caplog)) == 3  # type: ignore[attr-defined]


def test_workers_do_not_purge_unless_asked(client: Client) -> None:
    runs = _finished_runs(client, 1)
    _age(client, runs, 12 * MONTH)
    with Worker(client, poll_interval=0.05):
        time.sleep(0.3)
    assert _left(client) == {runs[0].id}


def test_a_bad_purge_setting_is_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="purge_after"):
        Worker(client, purge_after=timedelta(0))
    with pytest.raises(ValueError, match="purge_interval"):
        Worker(client, purge_after=MONTH, purge_interval=0)
