"""Every statement the step path sends stays one psycopg parses once, then takes from its cache.

psycopg turns ``%(name)s`` placeholders into ``$n`` in Python, and caches the result only for
statements of up to 4 KiB and 50 parameters: a longer one is parsed again at every execution.
A chained step's fused statement crossed that line once by a few bytes, and a step then ran
two fifths more Python. Fused statements are cut to stay within it
(:data:`squidmesh_sdk.store.fusion.LONGEST`).
"""

from __future__ import annotations

from typing import Any

import psycopg._queries
import pytest
import sqlalchemy as sa

from benchmarks.workflows import FAN_OUT, KEYED, LINEAR, make_client
from squidmesh_sdk import Worker
from squidmesh_sdk.store import fusion
from tests.integration.worker.conftest import settled, wait_until


def test_the_fused_statements_limits_are_within_psycopg_s_cache() -> None:
    assert fusion.LONGEST <= psycopg._queries.MAX_CACHED_STATEMENT_LENGTH
    assert fusion.MOST_PARAMETERS <= psycopg._queries.MAX_CACHED_STATEMENT_PARAMS


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_every_statement_of_the_step_path_is_cached_by_psycopg(database_url: str) -> None:
    sent: list[tuple[int, int, str]] = []

    def record(*args: Any) -> None:
        _connection, _cursor, sql, parameters, _context, many = args
        if not many:  # an executemany's parameters are rows, each parsed as one statement
            sent.append((len(sql.encode()), len(parameters or ()), sql))

    with make_client(database_url) as client:
        client.migrate()
        sa.event.listen(client.database.engine, "before_cursor_execute", record)
        runs = [client.start_run(LINEAR) for _ in range(3)]
        runs += [client.start_run(FAN_OUT) for _ in range(2)]
        runs += [client.start_run(KEYED, {"key": "k"}) for _ in range(3)]
        with Worker(client, concurrency=4, poll_interval=0.05):
            wait_until(settled(client, runs), what="the runs")
        sa.event.remove(client.database.engine, "before_cursor_execute", record)
        assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
    fused = [item for item in sent if "squidmesh_fused_1" in item[2]]
    assert fused, "no statement was fused"
    too_big = [
        (size, count, sql[:80])
        for size, count, sql in sent
        if size > psycopg._queries.MAX_CACHED_STATEMENT_LENGTH
        or count > psycopg._queries.MAX_CACHED_STATEMENT_PARAMS
    ]
    assert too_big == []
