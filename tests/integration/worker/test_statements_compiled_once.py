"""A worker on SQLite compiles each statement once per connection, not at every execution.

SQLite keeps compiled statements (Python's ``sqlite3`` caches them per connection), but marks
one stale when the value bound to a parameter decided its plan: a ``status = ?`` that a
partial index's ``WHERE status = 'queued'`` had to match made SQLite compile the worker's
claim again at every claim. SQLite's authorizer is asked while a statement is compiled and
never while it runs, so counting its calls per statement and connection shows any statement
compiled more than once, across linear, fan-out and keyed (flow-controlled) runs and the
heartbeat that renews their leases.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks.squidmesh import CompletionObserver
from benchmarks.workflows import FAN_OUT, KEYED, LINEAR, make_client
from squidmesh_sdk import Worker

# Compiled for every use by the driver or not a statement of ours: BEGIN, COMMIT, PRAGMAs.
_NOT_COUNTED = (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_PRAGMA, sqlite3.SQLITE_SAVEPOINT)


def test_a_sqlite_worker_compiles_each_statement_once_per_connection(tmp_path: Path) -> None:
    compilations: Counter[tuple[int, str]] = Counter()
    executing = threading.local()  # the statement the thread's connection is executing
    connections = itertools.count()
    observer = CompletionObserver()
    with make_client(f"sqlite+pysqlite:///{tmp_path}/once.db", [observer]) as client:
        client.migrate()  # its DDL makes SQLite compile what it compiled before again

        @sa.event.listens_for(client.database.engine, "connect")
        def _count_compilations(dbapi_connection: Any, _record: Any) -> None:
            number = next(connections)

            def authorize(action: int, *_: object) -> int:
                statement = getattr(executing, "statement", None)
                if action not in _NOT_COUNTED and statement is not None:
                    compilations[(number, statement)] += 1
                    executing.statement = None  # one compilation asks many times
                return sqlite3.SQLITE_OK

            dbapi_connection.set_authorizer(authorize)

        @sa.event.listens_for(client.database.engine, "before_cursor_execute")
        def _note_statement(*args: Any) -> None:
            executing.statement = args[2]

        client.database.dispose()  # the connections made from now on are counted
        for _ in range(20):
            client.start_run(LINEAR)
            client.start_run(FAN_OUT)
            client.start_run(KEYED, {"key": "k"})
        observer.expect(60)
        # A short lease: the worker renews its running jobs' leases (every lease / 3) while
        # it drains, so the heartbeat's statement is counted too.
        with Worker(client, concurrency=4, poll_interval=0.05, lease=0.9):
            observer.wait_all(timeout=120)
    assert len(compilations) > 10  # the authorizer was asked: statements were counted
    again = {statement: count for (_, statement), count in compilations.items() if count > 1}
    assert again == {}
