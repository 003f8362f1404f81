"""``python -m benchmarks``: run every measurement on one database and print the table.

Usage::

    python -m benchmarks --db sqlite|postgres [--quick] [--postgres-url URL] [--repeat K]
                         [--json]

``--db postgres`` without ``--postgres-url`` starts a private PostgreSQL server with durable
settings (``fsync=on``, ``synchronous_commit=on``) and destroys it at the end. With
``--postgres-url`` the squidmesh and ``raw_*`` tables of that database are dropped and
recreated for every measurement: never point it at a database whose runs you want to keep.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import flow, raw, squidmesh, traced
from benchmarks.report import render_json, render_table, summarize
from benchmarks.results import Result, median_result
from benchmarks.targets import Target, cpu_count, open_target

__all__ = ["Plan", "main"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How many runs each measurement executes, at which concurrency."""

    latency_runs: int
    runs: int
    fan_out_runs: int
    threads: tuple[int, ...]
    processes: tuple[tuple[int, int], ...]
    """(worker processes, threads each) of every row 3: a few processes of a few threads, and
    one process per core with the threads that keep a process busy (its steps mostly wait on
    the database)."""
    fan_out_threads: int = 4
    counted_threads: int = 4
    beside_queued: int = 3000
    """Row 9: runs queued for the worker process (enough to keep it busy through the window)."""
    beside_window: float = 2.0
    """Row 9: seconds of ``start_run`` calls beside the busy worker process."""
    require_busy: bool = True
    """Row 9 fails if the worker ran out of queued runs within the window."""

    @classmethod
    def full(cls) -> Plan:
        """The default: 100 latency runs, 500 runs per throughput row, 1 to 8 threads."""
        return cls(
            latency_runs=100,
            runs=500,
            fan_out_runs=100,
            threads=(1, 2, 4, 8),
            processes=((2, 2), (4, 2), (2, 8)),
        )

    @classmethod
    def quick(cls) -> Plan:
        """A few runs at fewer concurrency levels: checks that everything works, in seconds."""
        return cls(
            latency_runs=5,
            runs=10,
            fan_out_runs=3,
            threads=(1, 4),
            processes=((2, 2),),
            beside_queued=300,
            beside_window=0.2,
            require_busy=False,
        )


Measurement = tuple[str, Callable[[Target], Result]]


def _measurements(plan: Plan) -> list[Measurement]:
    """Every measurement of one round, in table order, each with a stable key."""

    def latency(target: Target) -> Result:
        """Row 1."""
        return squidmesh.latency(target, plan.latency_runs)

    def threads(n: int) -> Callable[[Target], Result]:
        """Row 2 with ``n`` threads (counting statements at the counted level)."""
        counted = n == plan.counted_threads
        return lambda target: squidmesh.throughput_threads(target, plan.runs, n, count=counted)

    def processes(n: int, threads: int) -> Callable[[Target], Result]:
        """Row 3 with ``n`` processes of ``threads`` threads."""
        return lambda target: squidmesh.throughput_processes(target, plan.runs, n, threads)

    def fan_out(target: Target) -> Result:
        """Row 4."""
        return squidmesh.fan_out(target, plan.fan_out_runs, plan.fan_out_threads)

    def raw_limit(n: int) -> Callable[[Target], Result]:
        """Row 6 with ``n`` threads."""
        return lambda target: raw.raw_throughput(target, plan.runs, n)

    def tracing(on: bool) -> Callable[[Target], Result]:
        """Row 7, tracing off or on."""
        return lambda target: traced.tracing_cost(
            target, plan.runs, plan.counted_threads, traced=on
        )

    def key_limit(target: Target) -> Result:
        """Row 8, per-key limit."""
        return flow.keyed(target, plan.runs, plan.counted_threads)

    def rate_limit(target: Target) -> Result:
        """Row 8, rate limit: a fifth of the runs' steps per second (a few seconds' work)."""
        rate = max(10, plan.runs // 5)
        return flow.rate_limited(target, plan.runs, plan.counted_threads, rate)

    def beside_worker(target: Target) -> Result:
        """Row 9: starts beside a worker process of 8 threads."""
        return squidmesh.start_beside_worker(
            target, plan.beside_queued, 8, plan.beside_window, require_busy=plan.require_busy
        )

    return [
        ("latency", latency),
        *((f"threads-{n}", threads(n)) for n in plan.threads),
        *((f"processes-{n}x{t}", processes(n, t)) for n, t in plan.processes),
        ("fan-out", fan_out),
        *((f"raw-{n}", raw_limit(n)) for n in plan.threads),
        ("tracing-off", tracing(False)),
        ("tracing-on", tracing(True)),
        ("flow-keyed", key_limit),
        ("flow-rate", rate_limit),
        ("beside-worker", beside_worker),
    ]


def _parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Measure squidmesh (latency, throughput with threads and processes, fan-out, "
            "statements and commits per step) and, in the same run, the raw two-transaction "
            "limit of the database; print one table."
        ),
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument(
        "--postgres-url",
        help=(
            "use this PostgreSQL database instead of starting a private durable server; its "
            "squidmesh and raw_* tables are dropped and recreated for every measurement"
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few runs at fewer concurrency levels"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="K",
        help="run every measurement K times and report the medians (default 1)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the results as JSON instead of the table"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return the exit code (0, or 2 for bad arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.postgres_url and args.db != "postgres":
        parser.error("--postgres-url needs --db postgres")
    plan = Plan.quick() if args.quick else Plan.full()
    load = os.getloadavg()[0]  # before we add our own
    measurements = _measurements(plan)
    samples: dict[str, list[Result]] = {key: [] for key, _ in measurements}
    with open_target(args.db, args.postgres_url) as target:
        _progress(f"database: {target.description}")
        for round_number in range(1, args.repeat + 1):
            for key, measure in measurements:
                _progress(f"round {round_number}/{args.repeat}: {key}")
                samples[key].append(measure(target))
        header = _header(target, args.repeat, load, quick=args.quick)
    results = [median_result(samples[key]) for key, _ in measurements]
    summary = summarize(args.db, results)
    if args.json:
        document: dict[str, Any] = {
            "header": header,
            "repeat": args.repeat,
            "quick": args.quick,
            "samples": {key: [r.to_dict() for r in values] for key, values in samples.items()},
        }
        print(render_json(document, results, summary))
    else:
        print(render_table(header, results, summary))
    return 0


def _header(target: Target, repeat: int, load: float, *, quick: bool) -> list[str]:
    """The lines printed above the table (``load``: the 1-minute load average at the start)."""
    statistic = f"medians of {repeat} rounds" if repeat > 1 else "one round"
    return [
        "squidmesh benchmarks" + (" (--quick: tiny run counts)" if quick else ""),
        f"database: {target.description}",
        f"machine: {cpu_count()} CPUs, {interpreter()}, load average {load:.2f} at the start; "
        f"figures are {statistic}",
    ]


def interpreter() -> str:
    """The interpreter measured: version, implementation, executable, how libpython is linked.

    The same code runs an eighth faster or slower from one build of CPython to another (a
    static or a shared libpython, profile-guided and link-time optimization or not), so the
    header names the build: ``python -m benchmarks`` in a virtualenv measures the
    interpreter the virtualenv was made from.
    """
    executable = os.path.realpath(sys.executable)
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()} "
        f"{executable}, {_libpython()})"
    )


def _libpython() -> str:
    """Whether this process runs libpython as a shared library (Linux), and which one."""
    try:
        with Path("/proc/self/maps").open(encoding="utf-8") as maps:
            # The sixth field is the mapped file's path (which may hold spaces), with
            # " (deleted)" after it when the file was replaced since.
            fields = [line.rstrip("\n").split(maxsplit=5) for line in maps if "libpython" in line]
    except OSError:
        return "libpython's linking unknown"
    paths = {field[5].removesuffix(" (deleted)") for field in fields if len(field) == 6}
    shared = sorted(path for path in paths if path.startswith("/"))
    return f"libpython shared: {shared[0]}" if shared else "libpython linked in"


def _progress(message: str) -> None:
    """Report progress on stderr (stdout carries the table)."""
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)
