"""A step's writes touch no index entry they do not change: its run and job rows' updates.

Every step updates its run (``current_step``, ``context``, ``updated_at``) and rewrites its job
row into the next step's job. When such an update changes no column an index covers,
PostgreSQL makes it a heap-only tuple (HOT): no entry is added to any of the table's indexes
(eight on runs, nine before migration 10), so a busy database writes less WAL and its indexes
do not grow with every step. ``pg_stat_user_tables`` counts both kinds of update.

SQLite rewrites the index entries of every column an update *sets*, changed or not, and each
page it dirties is written to the write-ahead log at commit: so a step's updates set no
indexed column whose value stays (the run's status, the job's run, lease and status).
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Worker
from tests.integration.worker.app import make_client
from tests.integration.worker.conftest import settled, wait_until

RUNS = 20


def _updates(url: str) -> dict[str, tuple[int, int]]:
    """Each squidmesh table's (updates, in-place updates), once every backend reported them."""
    engine = sa.create_engine(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.text(
                        "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                        " WHERE relname IN ('squidmesh_runs', 'squidmesh_jobs')"
                    )
                ).all()
            counts = {row.relname: (row.n_tup_upd, row.n_tup_hot_upd) for row in rows}
            # Backends report when their connection closes; five updates a run at least.
            if counts.get("squidmesh_runs", (0, 0))[0] >= 5 * RUNS or time.monotonic() > deadline:
                return counts
            time.sleep(0.1)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_steps_update_their_run_and_job_rows_in_place(database_url: str) -> None:
    with make_client(database_url) as client:
        runs = [client.start_run("five_steps") for _ in range(RUNS)]
        with Worker(client, concurrency=2, poll_interval=0.05):
            wait_until(settled(client, runs), what="the runs")
        assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
    # The client's connections are closed: their backends have reported.
    counts = _updates(database_url)
    run_updates, run_in_place = counts["squidmesh_runs"]
    job_updates, job_in_place = counts["squidmesh_jobs"]
    # A run of five steps: its four moves from step to step change no indexed column (its
    # status changes twice: running, completed); PostgreSQL needs free room on the row's page
    # for an in-place update, which the first updates of a full page do not find.
    assert run_updates >= 5 * RUNS
    assert run_in_place >= run_updates // 2, counts
    # Each run's job row is rewritten four times (step 1 -> 2 -> ... -> 5) by its continuation.
    assert job_updates >= 4 * RUNS
    assert job_in_place >= job_updates // 2, counts


def _wal_pages(wal: Path) -> Counter[int]:
    """How many times the write-ahead log holds each page (the page number of every frame)."""
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    frames: Counter[int] = Counter()
    for offset in range(32, len(data) - 24 - page_size + 1, 24 + page_size):
        frames[int.from_bytes(data[offset : offset + 4], "big")] += 1
    return frames


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_steps_rewrite_no_index_page_whose_entries_they_keep(database_url: str) -> None:
    """Per run, only the run's two status changes and its job's claim and delete write these.

    Three indexes of one page each (a few runs), counted in the write-ahead log of the runs'
    transactions, from the claim of each run's first step to the delete of its last job.
    Before, each of the four moves from step to step also rewrote three of them.
    """
    runs_count = 10
    with make_client(database_url) as client:
        # Keep every page the runs write in the log, to count them there.
        sa.event.listen(
            client.database.engine,
            "connect",
            lambda connection, _record: connection.execute("PRAGMA wal_autocheckpoint=0"),
        )
        runs = [client.start_run("five_steps") for _ in range(runs_count)]
        path = Path(client.database.engine.url.database or "")
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with Worker(client, concurrency=1, poll_interval=0.05):
            wait_until(settled(client, runs), what="the runs")
        assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
        with closing(sqlite3.connect(path)) as connection:
            roots: dict[str, int] = dict(
                connection.execute("SELECT name, rootpage FROM sqlite_schema WHERE type = 'index'")
            )
        frames = _wal_pages(path.with_name(path.name + "-wal"))
    written = {
        name: frames[roots[name]]
        for name in (
            "ix_squidmesh_runs_status_inserted_at",
            "ix_squidmesh_jobs_run_id",
            "ix_squidmesh_jobs_leases",
        )
    }
    # Status: running, then completed. The job: claimed (into the lease index) and deleted
    # (out of both); a transaction may hold several runs' changes, so at most these.
    assert written["ix_squidmesh_runs_status_inserted_at"] <= 2 * runs_count, written
    assert written["ix_squidmesh_jobs_run_id"] <= runs_count, written
    assert written["ix_squidmesh_jobs_leases"] <= 2 * runs_count, written
    assert sum(frames.values()) > 0
