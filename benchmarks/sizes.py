"""How the cost of a run grows with its length and its outputs: ``python -m benchmarks.sizes``.

Usage::

    python -m benchmarks.sizes --db sqlite|postgres [--postgres-url URL] [--quick]

Linear workflows of 1 to 50 steps, with tiny outputs and with 10 KB per step, run one at a
time on one in-process worker thread (as row 1 of ``python -m benchmarks``). The table gives
the p50 of a whole run and that divided by its steps. The run's state (every output so far)
is read and rewritten at each step, so large outputs make later steps dearer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

from benchmarks.squidmesh import CompletionObserver
from benchmarks.targets import open_target
from benchmarks.workflows import POLL_INTERVAL, linear
from squidmesh_sdk import Client, DatabaseExecutor, Worker

__all__ = ["main"]

FULL = ((1, 0), (5, 0), (20, 0), (50, 0), (5, 10_000), (20, 10_000), (50, 10_000))
"""(steps, output bytes per step) of every workflow measured."""
QUICK = ((1, 0), (5, 0), (5, 10_000))
WARM_UP_RUNS = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every workflow size; print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sizes",
        description="p50 latency of linear runs of growing length and output size",
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--postgres-url")
    parser.add_argument("--quick", action="store_true", help="three small workflows, few runs")
    args = parser.parse_args(argv)
    if args.postgres_url and args.db != "postgres":
        parser.error("--postgres-url needs --db postgres")
    configs = QUICK if args.quick else FULL
    workflows = [
        linear(steps, name=f"bench_linear_{steps}_{size}", output_bytes=size)
        for steps, size in configs
    ]
    rows = [("steps", "output/step", "runs", "p50 ms/run", "ms/step")]
    observer = CompletionObserver()
    with (
        open_target(args.db, args.postgres_url) as target,
        Client(
            target.fresh(), workflows, executor=DatabaseExecutor(), observers=[observer]
        ) as client,
    ):
        description = target.description
        client.migrate()
        with Worker(client, concurrency=1, poll_interval=POLL_INTERVAL):
            for (steps, size), workflow in zip(configs, workflows, strict=True):
                runs = 3 if args.quick else max(6, 100 // steps)
                samples = []
                for index in range(WARM_UP_RUNS + runs):
                    started = time.perf_counter()
                    run = client.start_run(workflow.name)
                    completed = observer.wait_run(run.id)
                    if index >= WARM_UP_RUNS:
                        samples.append(completed - started)
                p50 = statistics.median(samples) * 1000
                output = f"{size:,} B" if size else "tiny"
                rows.append((str(steps), output, str(runs), f"{p50:.1f}", f"{p50 / steps:.2f}"))
    print(f"database: {description}")
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
