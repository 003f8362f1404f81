"""Machine instructions executed per step, C included: ``python -m benchmarks.instructions``.

Usage::

    python -m benchmarks.instructions --db sqlite|postgres [--postgres-url URL] [--runs N]
                                      [--threads T] [--workflow linear|fan-out|keyed]
                                      [--top K]
                                      [--tracing]

Needs valgrind (Debian's ``valgrind`` package). A child process queues runs (5-step linear
ones, or with ``--workflow fan-out`` row 4's 1 -> 10 -> 1, of 12 steps, or with ``--workflow
keyed`` row 8's keyed 5-step runs, over 8 keys of limit 2), then one
in-process worker of ``--threads`` threads drains them, under valgrind's callgrind tool with
counting switched on only inside threads the ``threading`` module started (the worker's):
the set-up in the main thread, interpreter start and shutdown are not counted. The child runs
twice, with ``--runs`` and twice as many runs; the difference of the two counts, divided by
the extra steps, is what one more step costs, without what happens once (the first
statements' compilation, the worker's start and stop).

:mod:`benchmarks.bytecodes` counts the Python a step runs; this counts everything the
worker's process executes for it: the interpreter, the database driver, SQLite itself (it
runs in the process), ``json``'s C encoder, the C library, the garbage collector. The count
does not depend on what else the machine is doing, where times on a shared machine move by a
tenth or more from one minute to the next: comparing two trees' counts shows what a change
saves, to a fraction of a per cent. It does not see time spent waiting (an ``fsync``, the
PostgreSQL server, which is another process), nor what an instruction costs (cache misses);
the timed rows of :mod:`benchmarks` say whether a change mattered.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.flow import key_payload
from benchmarks.squidmesh import CompletionObserver, start_runs
from benchmarks.targets import open_target
from benchmarks.traced import install_discarding_sdk
from benchmarks.workflows import FAN_OUT, FAN_OUT_STEPS, KEYED, LINEAR, LINEAR_STEPS, make_client
from squidmesh_sdk import Worker

__all__ = ["Profile", "counted", "difference", "main", "measure", "read_profile"]

WORKFLOWS = {
    "linear": (LINEAR, LINEAR_STEPS, None),
    "fan-out": (FAN_OUT, FAN_OUT_STEPS, None),
    "keyed": (KEYED, LINEAR_STEPS, key_payload),
}
"""``--workflow``: the benchmark workflow's name, its steps per run, its runs' payloads."""

THREAD_ENTRY = "thread_run"
"""The C function every ``threading`` thread starts in (CPython's ``_threadmodule.c``)."""


@dataclass(frozen=True)
class Profile:
    """Instructions counted in one child, by ``(object file, function)`` (self cost)."""

    steps: int
    by_function: Counter[tuple[str, str]]

    @property
    def total(self) -> int:
        """All instructions counted."""
        return sum(self.by_function.values())


def counted(profile: Profile) -> Profile:
    """``profile``, unless callgrind counted nothing in it.

    Counting starts in :data:`THREAD_ENTRY`, found by its symbol: under a stripped
    interpreter (Debian's ``/usr/bin/python3.11``) callgrind counts nothing, which must not be
    reported as a step that costs nothing.

    Raises:
        RuntimeError: no instruction was counted.
    """
    if profile.total:
        return profile
    raise RuntimeError(
        "callgrind counted no instruction in the worker's threads: "
        f"{os.path.realpath(sys.executable)} has no symbol {THREAD_ENTRY!r} "
        "(a stripped build?); measure with an interpreter that has its symbols"
    )


def read_profile(path: Path, steps: int) -> Profile:
    """Read a callgrind output file: every function's own instructions (not its callees').

    The format (valgrind's manual, "Callgrind Format Specification"): ``ob=``, ``fn=`` name
    the object file and function the cost lines after them belong to, with names compressed
    to ``(id) name`` the first time and ``(id)`` after; ``cob=``, ``cfn=`` and the like name
    a callee, and the cost line right after ``calls=`` is that call's inclusive cost, which
    belongs to the callee, not to the current function.
    """
    names: dict[tuple[str, str], str] = {}
    by_function: Counter[tuple[str, str]] = Counter()
    obj = function = "?"
    after_calls = False
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line[:1].isdigit() or line[:1] in "+-*":
                if after_calls:
                    after_calls = False
                else:
                    fields = line.split()
                    if len(fields) > 1:
                        by_function[(obj, function)] += int(fields[1])
                continue
            key, _, value = line.rstrip("\n").partition("=")
            if key == "calls":
                after_calls = True
            elif key in ("ob", "fn", "cob", "cfn"):
                name = _name(names, key[-2:], value)
                if key == "ob":
                    obj = name
                elif key == "fn":
                    # A recursive call's cost is kept apart as "name'2", "name'3": one name.
                    function = _RECURSION.sub("", name)
    return Profile(steps, by_function)


_RECURSION = re.compile(r"'\d+$")
_COMPRESSED = re.compile(r"\((\d+)\)(?: (.*))?")


def _name(names: dict[tuple[str, str], str], kind: str, value: str) -> str:
    """Resolve a callgrind name that may be compressed (``(12) name``, then ``(12)``)."""
    match = _COMPRESSED.fullmatch(value)
    if match is None:
        return value
    ident, name = (kind, match.group(1)), match.group(2)
    if name is not None:
        names[ident] = name
        return name
    return names.get(ident, value)


def difference(small: Profile, large: Profile) -> tuple[float, Counter[str], Counter[str]]:
    """What one more step costs: instructions per step, by object file and by function.

    The object files are named by their file name; a function by its object's and its own.
    """
    steps = large.steps - small.steps
    if steps <= 0:
        raise ValueError("the second profile must have more steps than the first")
    extra = Counter(large.by_function)
    extra.subtract(small.by_function)
    per_object: Counter[str] = Counter()
    per_function: Counter[str] = Counter()
    for (obj, function), count in extra.items():
        per_object[Path(obj).name] += count
        per_function[f"{Path(obj).name}: {function}"] += count
    return (
        (large.total - small.total) / steps,
        Counter({name: count / steps for name, count in per_object.items()}),
        Counter({name: count / steps for name, count in per_function.items()}),
    )


QUIET = 3600.0
"""The child worker's poll interval and lease, in seconds: what a worker does by the clock
(look at the queue and its limits, renew and rescue leases) it then does once or not at all.
Under valgrind a step takes a hundred times longer, and that work, done as often as it is in
the timed rows, would be counted by the time the drain took, not by its steps."""


VALGRIND_TIMEOUT = 4 * 3600.0
"""Seconds a child may take to drain its runs: under valgrind a step is a hundred times slower
than without, and slower still on a busy machine."""


def _child(url: str, runs: int, threads: int, workflow: str, *, tracing: bool) -> None:
    if tracing:
        install_discarding_sdk()
    observer = CompletionObserver()
    with make_client(url, [observer]) as client:
        client.migrate()
        name, _, payload = WORKFLOWS[workflow]
        start_runs(client, name, runs, payload)
        observer.expect(runs)
        worker = Worker(client, concurrency=threads, poll_interval=QUIET, lease=QUIET)
        worker.start()
        try:
            observer.wait_all(timeout=VALGRIND_TIMEOUT)
        finally:
            worker.stop()


def measure(
    fresh: Callable[[], str],
    runs: int,
    threads: int,
    *,
    tracing: bool = False,
    together: bool = False,
    workflow: str = "linear",
) -> tuple[Profile, Profile]:
    """Drain ``runs`` and ``2 * runs`` runs under callgrind, in a child process each.

    The runs are of ``workflow``, a key of :data:`WORKFLOWS`. ``fresh`` gives each child the
    URL of an empty database, just before it starts. The children run one after the other, or
    both at once with ``together`` (databases of their own, such as two SQLite files: the
    count does not depend on what runs beside it).

    Raises:
        RuntimeError: valgrind is not installed, a child failed, or one counted nothing.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="squidmesh-instructions-") as directory:
        outputs = {count: Path(directory) / f"callgrind.{count}" for count in (runs, 2 * runs)}

        def start(count: int) -> subprocess.Popen[str]:
            command = [
                valgrind,
                "--tool=callgrind",
                "--collect-atstart=no",
                f"--toggle-collect={THREAD_ENTRY}",
                f"--callgrind-out-file={outputs[count]}",
                *(sys.executable, "-m", "benchmarks.instructions"),
                *("--child", fresh(), str(count), str(threads), workflow),
                *(["--tracing"] if tracing else []),
            ]
            return subprocess.Popen(  # noqa: S603 - valgrind and our own module
                command,
                cwd=Path(__file__).parents[1],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )

        def finish(count: int, child: subprocess.Popen[str]) -> Profile:
            _, errors = child.communicate(timeout=VALGRIND_TIMEOUT + 600)
            if child.returncode != 0 or not outputs[count].exists():
                raise RuntimeError(f"the child under valgrind failed:\n{errors[-3000:]}")
            return counted(read_profile(outputs[count], count * WORKFLOWS[workflow][1]))

        children: list[subprocess.Popen[str]] = []
        try:
            if together:
                children = [start(count) for count in outputs]
                small, large = (
                    finish(count, child) for count, child in zip(outputs, children, strict=True)
                )
            else:
                profiles = []
                for count in outputs:
                    children.append(start(count))
                    profiles.append(finish(count, children[-1]))
                small, large = profiles
        finally:
            for child in children:  # one failed, or we were interrupted: stop the other
                if child.poll() is None:
                    child.kill()
                    child.wait()
    return small, large


def render(per_step: float, per_object: Counter[str], per_function: Counter[str], top: int) -> str:
    """The table: instructions per step, then by object file and by function."""
    lines = [f"instructions per step: {per_step:,.0f}", "", "instructions/step  object file"]
    lines += [f"{n:18,.0f}  {name}" for name, n in per_object.most_common(top) if abs(n) >= 0.5]
    lines += ["", "instructions/step  object file: function (its own instructions)"]
    lines += [f"{n:18,.0f}  {name}" for name, n in per_function.most_common(top) if abs(n) >= 0.5]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the table; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description="Count the machine instructions a worker executes per step, C included "
        "(needs valgrind; see the module).",
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"])
    parser.add_argument("--postgres-url", help="use this PostgreSQL database (see benchmarks)")
    parser.add_argument("--runs", type=int, default=50, help="runs of the first child (50)")
    parser.add_argument("--threads", type=int, default=1, help="the worker's threads (1)")
    parser.add_argument(
        "--workflow", choices=list(WORKFLOWS), default="linear", help="the runs' workflow (linear)"
    )
    parser.add_argument("--top", type=int, default=30, help="objects and functions listed (30)")
    parser.add_argument(
        "--tracing", action="store_true", help="with the OpenTelemetry SDK, as row 7's 'on'"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("URL", "RUNS", "THREADS", "WORKFLOW"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child is not None:
        url, runs, threads, workflow = args.child
        _child(url, int(runs), int(threads), workflow, tracing=args.tracing)
        return 0
    if args.db is None:
        parser.error("--db is required")
    if args.runs < 1 or args.threads < 1 or args.top < 0:
        parser.error("--runs and --threads must be at least 1, --top at least 0")
    if args.postgres_url and args.db != "postgres":
        parser.error("--postgres-url needs --db postgres")
    with open_target(args.db, args.postgres_url) as target:
        try:
            # fresh() empties a PostgreSQL target: each child gets its URL just before it runs.
            small, large = measure(
                target.fresh,
                args.runs,
                args.threads,
                tracing=args.tracing,
                together=target.kind == "sqlite",  # a file each; PostgreSQL has one database
                workflow=args.workflow,
            )
        except RuntimeError as exc:
            print(f"python -m benchmarks.instructions: {exc}", file=sys.stderr)
            return 1
        traced = "; tracing on (SDK, discarding exporter)" if args.tracing else ""
        threads = f"{args.threads} thread{'s' * (args.threads != 1)}"
        print(
            f"database: {target.description}; {args.runs} and {2 * args.runs} {args.workflow} "
            f"runs, one worker of {threads}{traced}; valgrind {_valgrind_version()}"
        )
    print(render(*difference(small, large), args.top))
    return 0


def _valgrind_version() -> str:
    valgrind = shutil.which("valgrind") or "valgrind"
    done = subprocess.run(  # noqa: S603 - a version query
        [valgrind, "--version"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip().removeprefix("valgrind-")


if __name__ == "__main__":
    sys.exit(main())
