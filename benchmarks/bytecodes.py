"""Python bytecodes executed per step: ``python -m benchmarks.bytecodes``.

Usage::

    python -m benchmarks.bytecodes --db sqlite|postgres [--postgres-url URL] [--runs N]
                                   [--top K] [--tracing]

``--runs`` 5-step runs are queued, then drained by one in-process worker thread (as row 2 of
``python -m benchmarks`` at one thread) while a trace function counts every bytecode and
every Python call its delivery thread executes (the thread that claims, runs and records
the steps; the worker's loop and heartbeat, which wake on timers, are left out); the table
gives both per step, and the functions and files that execute the most. Tracing makes the
drain many times slower, so there is no time in the table.

The count barely moves from one invocation to the next (the first statements' compilation is
spread over ``--runs``), where times on a shared machine move by a tenth or more from one
minute to the next: comparing two trees' counts shows what a change to the Python of the hot
path saves. It does not see what runs in C (the database driver, ``json``'s encoder, SQLite
itself), nor what a bytecode costs: the benchmark's times say whether it mattered.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.squidmesh import CompletionObserver, start_runs
from benchmarks.targets import open_target
from benchmarks.traced import install_discarding_sdk
from benchmarks.workflows import LINEAR, LINEAR_STEPS, POLL_INTERVAL, make_client
from squidmesh_sdk import Worker

__all__ = ["Count", "count", "main"]

Tracer = Callable[[FrameType, str, Any], Any]


class Count:
    """Bytecodes and calls counted while a worker drained runs, by function."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.bytecodes: Counter[tuple[str, str]] = Counter()
        """Bytecodes by ``(file, function)``."""
        self.calls = 0

    @property
    def bytecodes_per_step(self) -> float:
        """Bytecodes executed per step."""
        return sum(self.bytecodes.values()) / self.steps

    @property
    def calls_per_step(self) -> float:
        """Python calls per step."""
        return self.calls / self.steps

    def by_file(self) -> Counter[str]:
        """Bytecodes by file."""
        files: Counter[str] = Counter()
        for (file, _), n in self.bytecodes.items():
            files[file] += n
        return files

    def tracer(self) -> Tracer:
        """The trace function to install in the worker's threads."""
        bytecodes = self.bytecodes

        def on_call(frame: FrameType, event: str, _arg: Any) -> Tracer | None:
            # One thread counts, so the counters need no lock.
            if event != "call" or not threading.current_thread().name.startswith(_DELIVERY):
                return None
            self.calls += 1
            frame.f_trace_opcodes = True
            key = (_short(frame.f_code.co_filename), frame.f_code.co_name)

            def on_opcode(_frame: FrameType, event: str, _arg: Any) -> Tracer:
                if event == "opcode":
                    bytecodes[key] += 1
                return on_opcode

            return on_opcode

        return on_call


_DELIVERY = "squidmesh-job"
"""The name prefix of a worker's delivery threads."""


def count(url: str, runs: int) -> Count:
    """Queue ``runs`` 5-step runs on ``url``, drain them with one traced worker thread."""
    observer = CompletionObserver()
    result = Count(runs * LINEAR_STEPS)
    with make_client(url, [observer]) as client:
        client.migrate()
        start_runs(client, LINEAR, runs)
        observer.expect(runs)
        worker = Worker(client, concurrency=1, poll_interval=POLL_INTERVAL)
        # Threads started from now on get the trace function (it counts in the delivery
        # thread only); whatever traced new threads before (a coverage tool) does again after.
        # The delivery thread starts with the first job, after the worker.
        previous = threading.gettrace()
        threading.settrace(result.tracer())
        try:
            worker.start()
            try:
                observer.wait_all()
            finally:
                worker.stop()
        finally:
            threading.settrace(previous)
    return result


def _short(file: str) -> str:
    """A file's path from its package on (``squidmesh_sdk/...``, ``json/encoder.py``)."""
    path = Path(file)
    for marker in ("squidmesh_sdk", "benchmarks", "site-packages"):
        if marker in path.parts:
            parts = path.parts[path.parts.index(marker) :]
            return str(Path(*parts[1:] if marker == "site-packages" else parts))
    # The standard library: its package and module (``json/encoder.py``) or the module.
    if path.parent.name.startswith("python"):
        return path.name
    return f"{path.parent.name}/{path.name}" if path.is_absolute() else file


def render(count: Count, top: int) -> str:
    """The table: bytecodes and calls per step, then the ``top`` files and functions."""
    per_step = count.steps
    lines = [
        f"bytecodes per step: {count.bytecodes_per_step:,.0f}",
        f"Python calls per step: {count.calls_per_step:,.0f}",
        "",
        "bytecodes/step  file",
    ]
    lines += [f"{n / per_step:14,.0f}  {file}" for file, n in count.by_file().most_common(top)]
    lines += ["", "bytecodes/step  function"]
    lines += [
        f"{n / per_step:14,.0f}  {file}:{function}"
        for (file, function), n in count.bytecodes.most_common(top)
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Count and print the table; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bytecodes",
        description="Count the Python bytecodes a worker executes per step (see the module).",
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--postgres-url", help="use this PostgreSQL database (see benchmarks)")
    parser.add_argument("--runs", type=int, default=100, help="5-step runs drained (100)")
    parser.add_argument("--top", type=int, default=30, help="files and functions listed (30)")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="install the OpenTelemetry SDK first, as row 7's 'tracing on' does (its spans go "
        "to an exporter that discards them): what tracing adds is the difference",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.top < 0:
        parser.error("--runs must be at least 1 and --top at least 0")
    if args.postgres_url and args.db != "postgres":
        parser.error("--postgres-url needs --db postgres")
    if args.tracing:
        # For the rest of this process: the API installs a provider once.
        install_discarding_sdk()
    with open_target(args.db, args.postgres_url) as target:
        result = count(target.fresh(), args.runs)
        traced = "; tracing on (SDK, discarding exporter)" if args.tracing else ""
        print(f"database: {target.description}; {args.runs} runs, one worker thread{traced}")
    print(render(result, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
