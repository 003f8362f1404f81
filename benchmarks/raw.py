"""Row 6: the raw limit, a minimal two-transaction step written directly with the driver.

No SQLAlchemy and no squidmesh: ``sqlite3`` or ``psycopg`` on the same database settings.
Step 1 of every run is inserted up front; each thread then loops:

1. claim the oldest queued row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite under
   ``BEGIN IMMEDIATE``, which serialises writers) and commit;
2. insert the step's output, insert the run's next step (steps 1 to 5), delete the claimed
   row, and commit.

That is the least a durable queue-driven step can do: two commits, the claim and the outcome
with the next work. squidmesh does more per step (attempts, step runs, the run row, the
routing), so this is the ceiling its throughput is compared with.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from benchmarks.results import Result
from benchmarks.targets import Target
from benchmarks.workflows import LINEAR_STEPS

__all__ = ["raw_throughput"]

TIMEOUT = 600.0
"""Seconds a measurement may take before it is abandoned as stuck."""

_SCHEMA = {
    "sqlite": (
        "CREATE TABLE raw_jobs (id INTEGER PRIMARY KEY, run INTEGER NOT NULL, "
        "step INTEGER NOT NULL, status TEXT NOT NULL)",
        "CREATE TABLE raw_outputs (run INTEGER NOT NULL, step INTEGER NOT NULL, "
        "output TEXT NOT NULL)",
    ),
    "postgres": (
        "CREATE TABLE raw_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "run int NOT NULL, step int NOT NULL, status text NOT NULL)",
        "CREATE TABLE raw_outputs (run int NOT NULL, step int NOT NULL, output text NOT NULL)",
    ),
}

_CLAIM = {
    "sqlite": (
        "UPDATE raw_jobs SET status = 'running' WHERE id = "
        "(SELECT id FROM raw_jobs WHERE status = 'queued' ORDER BY id LIMIT 1) "
        "RETURNING id, run, step"
    ),
    "postgres": (
        "UPDATE raw_jobs SET status = 'running' WHERE id = "
        "(SELECT id FROM raw_jobs WHERE status = 'queued' ORDER BY id LIMIT 1 "
        "FOR UPDATE SKIP LOCKED) RETURNING id, run, step"
    ),
}


@dataclass(frozen=True, slots=True)
class _Statements:
    """The raw loop's SQL for one driver (``?`` placeholders for sqlite3, ``%s`` for psycopg)."""

    claim: str
    insert_output: str
    insert_next: str
    delete: str
    insert_first: str


_STATEMENTS = {
    "sqlite": _Statements(
        claim=_CLAIM["sqlite"],
        insert_output="INSERT INTO raw_outputs (run, step, output) VALUES (?, ?, ?)",
        insert_next="INSERT INTO raw_jobs (run, step, status) VALUES (?, ?, 'queued')",
        delete="DELETE FROM raw_jobs WHERE id = ?",
        insert_first="INSERT INTO raw_jobs (run, step, status) VALUES (?, 1, 'queued')",
    ),
    "postgres": _Statements(
        claim=_CLAIM["postgres"],
        insert_output="INSERT INTO raw_outputs (run, step, output) VALUES (%s, %s, %s)",
        insert_next="INSERT INTO raw_jobs (run, step, status) VALUES (%s, %s, 'queued')",
        delete="DELETE FROM raw_jobs WHERE id = %s",
        insert_first="INSERT INTO raw_jobs (run, step, status) VALUES (%s, 1, 'queued')",
    ),
}


class _Loop:
    """The shared state of one raw measurement: statements, progress and the first error."""

    def __init__(self, kind: str, runs: int) -> None:
        self.kind = kind
        self.runs = runs
        self.sql = _STATEMENTS[kind]
        self.finished = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def work(self, connection: Any) -> None:
        """One thread's loop: claim, record and advance until every run finished."""
        try:
            while not self.done.is_set():
                claimed = self._transaction(connection, self._claim)
                if claimed is None:
                    time.sleep(0.0005)  # the queue is empty for now: others hold its rows
                    continue
                self._transaction(connection, partial(self._advance, claimed=claimed))
                if claimed[2] == LINEAR_STEPS:
                    with self.lock:
                        self.finished += 1
                        if self.finished == self.runs:
                            self.done.set()
        except BaseException as exc:  # noqa: BLE001 - raised again by the main thread
            self.error = exc
            self.done.set()

    def _transaction(self, connection: Any, body: Any) -> Any:
        """Run ``body(cursor)`` in one transaction and commit it; return what it returned."""
        cursor = connection.cursor()
        try:
            if self.kind == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")
            try:
                result = body(cursor)
            except BaseException:
                if self.kind == "sqlite":
                    cursor.execute("ROLLBACK")
                else:
                    connection.rollback()
                raise
            if self.kind == "sqlite":
                cursor.execute("COMMIT")
            else:
                connection.commit()
            return result
        finally:
            cursor.close()

    def _claim(self, cursor: Any) -> tuple[int, int, int] | None:
        """Transaction 1: lease the oldest queued row; ``(id, run, step)`` or ``None``."""
        cursor.execute(self.sql.claim)
        row = cursor.fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def _advance(self, cursor: Any, claimed: tuple[int, int, int]) -> None:
        """Transaction 2: record the output, queue the next step, delete the claimed row."""
        job_id, run, step = claimed
        cursor.execute(self.sql.insert_output, (run, step, json.dumps({f"step_{step}": 1})))
        if step < LINEAR_STEPS:
            cursor.execute(self.sql.insert_next, (run, step + 1))
        cursor.execute(self.sql.delete, (job_id,))


def _prepare(target: Target, url: str, runs: int) -> None:
    """Create the raw tables and queue step 1 of every run."""
    connection = target.raw_connect(url)
    try:
        cursor = connection.cursor()
        if target.kind == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA[target.kind]:
            cursor.execute(statement)
        cursor.executemany(
            _STATEMENTS[target.kind].insert_first,
            [(run,) for run in range(1, runs + 1)],
        )
        if target.kind == "sqlite":
            cursor.execute("COMMIT")
        else:
            connection.commit()
        cursor.close()
    finally:
        connection.close()


def raw_throughput(target: Target, runs: int, threads: int) -> Result:
    """Row 6: ``runs`` five-step runs through the raw loop on ``threads`` threads."""
    url = target.fresh()
    _prepare(target, url, runs)
    loop = _Loop(target.kind, runs)
    connections = [target.raw_connect(url) for _ in range(threads)]
    try:
        workers = [
            threading.Thread(target=loop.work, args=(connection,), name=f"raw-{index}")
            for index, connection in enumerate(connections)
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        finished = loop.done.wait(TIMEOUT)
        elapsed = time.perf_counter() - started
        loop.done.set()
        for worker in workers:
            worker.join()
    finally:
        for connection in connections:
            connection.close()
    if loop.error is not None:
        raise RuntimeError("the raw loop failed") from loop.error
    if not finished:
        raise RuntimeError(f"only {loop.finished} of {runs} raw runs finished in time")
    return Result(
        row=6,
        name="raw limit: driver, 2 txns/step",
        workers=f"{threads} thread{'s' * (threads != 1)}",
        concurrency=threads,
        runs=runs,
        steps=runs * LINEAR_STEPS,
        seconds=elapsed,
    )
