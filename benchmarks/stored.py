"""The cost of a step with many finished runs stored: ``python -m benchmarks.stored``.

Usage::

    python -m benchmarks.stored --db sqlite|postgres [--postgres-url URL] [--stored N]
                                [--runs N] [--repeat K] [--quick]

Two databases, measured alternately: one empty, one holding ``--stored`` finished 5-step runs
(100,000 by default) with their step runs, attempts and audit events, as a host's database
has after a while (the rows are copies of one real run, made in SQL, so filling is quick). On
each, ``--runs`` 5-step runs are queued, then drained by one in-process worker thread, as row
2 of ``python -m benchmarks``; the table gives the median cost per step of ``--repeat`` rounds
on each database and the ratio. Every hot-path statement reads or writes rows by primary key
or unique index, so the cost should barely move with the tables' size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import sqlalchemy as sa

from benchmarks.squidmesh import CompletionObserver, start_runs
from benchmarks.targets import open_target
from benchmarks.workflows import LINEAR, LINEAR_STEPS, POLL_INTERVAL, make_client
from squidmesh_sdk import Client, Worker
from squidmesh_sdk.store import schema

__all__ = ["main"]

ID_COLUMNS = {"id", "run_id", "step_run_id", "attempt_id"}
"""Id columns: each copy gets new ids, made of the template's and the copy's number."""
COPIED = (schema.runs, schema.step_runs, schema.attempts, schema.run_events)
"""The tables of a finished run, parents first."""


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the cost per step on an empty database and on one with stored runs."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stored",
        description="cost per step with many finished runs stored, against empty tables",
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--postgres-url")
    parser.add_argument("--stored", type=int, default=100_000, help="finished runs stored")
    parser.add_argument("--runs", type=int, default=500, help="5-step runs drained per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds on each database")
    parser.add_argument("--quick", action="store_true", help="1,000 stored runs, 50 drained")
    args = parser.parse_args(argv)
    if args.postgres_url and args.db != "postgres":
        parser.error("--postgres-url needs --db postgres")
    stored = 1_000 if args.quick else args.stored
    runs = 50 if args.quick else args.runs
    samples: dict[int, list[float]] = {0: [], stored: []}
    with open_target(args.db, args.postgres_url) as target:
        description = target.description
        for _ in range(args.repeat):
            for count in (0, stored):  # alternately, so that both see the same machine
                url = target.fresh()
                observer = CompletionObserver()
                with make_client(url, [observer]) as client:
                    client.migrate()
                    if count:
                        print(f"storing {count:,} finished runs...", file=sys.stderr)
                        _store_finished_runs(client, observer, count)
                    samples[count].append(_drain(client, observer, runs))
    print(f"database: {description}")
    print(f"{runs} five-step runs drained by 1 worker x 1 thread; medians of {args.repeat} rounds")
    empty = statistics.median(samples[0])
    full = statistics.median(samples[stored])
    rows = [
        ("stored runs", "ms/step", "steps/s", "rounds (ms/step)"),
        ("0", f"{empty:.3f}", f"{1000 / empty:,.0f}", " ".join(f"{s:.3f}" for s in samples[0])),
        (
            f"{stored:,}",
            f"{full:.3f}",
            f"{1000 / full:,.0f}",
            " ".join(f"{s:.3f}" for s in samples[stored]),
        ),
    ]
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    change = full / empty - 1
    print(f"cost per step with {stored:,} stored runs: {change:+.1%} against empty tables")
    return 0


def _drain(client: Client, observer: CompletionObserver, runs: int) -> float:
    """Queue ``runs`` linear runs, drain them with one worker thread; milliseconds per step."""
    start_runs(client, LINEAR, runs)
    observer.expect(runs)
    worker = Worker(client, concurrency=1, poll_interval=POLL_INTERVAL, cron=False)
    started = time.perf_counter()
    worker.start()
    try:
        observer.wait_all()
        elapsed = time.perf_counter() - started
    finally:
        worker.stop()
    return elapsed * 1000 / (runs * LINEAR_STEPS)


def _store_finished_runs(client: Client, observer: CompletionObserver, count: int) -> None:
    """Add ``count`` finished 5-step runs: one real run, then copies of its rows made in SQL."""
    _drain(client, observer, 1)
    engine = client.database.engine
    dialect = engine.dialect.name
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE bench_series (g INTEGER PRIMARY KEY)"))
        connection.execute(
            sa.text("INSERT INTO bench_series (g) VALUES (:g)"),
            [{"g": g} for g in range(1, count + 1)],
        )
        for table in COPIED:
            names = [column.name for column in table.columns]
            if table is schema.run_events:
                names.remove("id")  # an integer the database numbers
            values = [_copied(name, dialect) for name in names]
            columns = ", ".join(f'"{name}"' for name in names)
            connection.execute(
                sa.text(
                    f"INSERT INTO {table.name} ({columns}) "  # noqa: S608 - names from the schema
                    f"SELECT {', '.join(values)} FROM {table.name} CROSS JOIN bench_series"
                )
            )
        connection.execute(sa.text("DROP TABLE bench_series"))
    if dialect == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text("VACUUM ANALYZE"))


def _copied(name: str, dialect: str) -> str:
    """The SQL of column ``name`` in copy ``g``: ids made unique per copy, the rest as is."""
    quoted = f'"{name}"'
    if name not in ID_COLUMNS:
        return quoted
    if dialect == "postgresql":
        # The template's first 20 hex digits and the copy's number: unique, still a UUID.
        return (
            f"CAST(substr(replace(CAST({quoted} AS TEXT), '-', ''), 1, 20) "
            f"|| lpad(to_hex(g), 12, '0') AS UUID)"
        )
    return f"substr({quoted}, 1, 20) || printf('%012x', g)"  # SQLite keeps 32 hex digits


if __name__ == "__main__":
    sys.exit(main())
