"""A step's writes add no index entry on PostgreSQL: its run and job rows are updated in place.

Every step updates its run (``current_step``, ``context``, ``updated_at``) and rewrites its job
row into the next step's job. When such an update changes no column an index covers,
PostgreSQL makes it a heap-only tuple (HOT): no entry is added to any of the table's indexes
(eight on runs, nine before migration 10), so a busy database writes less WAL and its indexes
do not grow with every step. ``pg_stat_user_tables`` counts both kinds of update.
"""

from __future__ import annotations

import time

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
