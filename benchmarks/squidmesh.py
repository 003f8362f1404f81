"""Rows 1 to 5: squidmesh itself, with the built-in database queue and its workers.

Completion is observed, not polled, wherever the worker runs in this process: an observer
receives ``RunTransitioned(to_status="completed")`` right after the commit that completed the
run. Worker processes report nothing to this process, so for them the runs table is polled
(every 20 ms, one ``count(*)``).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from benchmarks.results import Result, percentile
from benchmarks.targets import Target
from benchmarks.workflows import (
    FAN_OUT,
    FAN_OUT_STEPS,
    LINEAR,
    LINEAR_STEPS,
    POLL_INTERVAL,
    make_client,
)
from squidmesh_sdk import Client, Worker
from squidmesh_sdk.runtime.events import RunEvent, RunTransitioned

__all__ = [
    "StatementCounter",
    "drain",
    "fan_out",
    "latency",
    "start_beside_worker",
    "throughput_processes",
    "throughput_threads",
]

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600.0
"""Seconds a measurement may take before it is abandoned as stuck."""
WARM_UP_RUNS = 2
"""Latency runs executed before the timed ones (connections, compiled statements)."""


class CompletionObserver:
    """Records when runs complete; lets a thread wait for one run or for a number of runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}
        self._completed_at: dict[str, float] = {}
        self._count = 0
        self._expected = 0
        self._all_done = threading.Event()
        self.failures: list[str] = []

    def emit(self, event: RunEvent) -> None:
        """Note a run that completed (or failed: a benchmark run must never fail)."""
        if not isinstance(event, RunTransitioned):
            return
        if event.to_status == "completed":
            now = time.perf_counter()
            with self._lock:
                self._completed_at[event.run.id] = now
                waiter = self._events.setdefault(event.run.id, threading.Event())
                self._count += 1
                if self._expected and self._count >= self._expected:
                    self._all_done.set()
            waiter.set()
        elif event.to_status in ("failed", "cancelled"):
            with self._lock:
                self.failures.append(f"run {event.run.id} {event.to_status}")
            self._all_done.set()

    def expect(self, runs: int) -> None:
        """Start counting completions from zero; :meth:`wait_all` returns after ``runs``."""
        with self._lock:
            self._count = 0
            self._expected = runs
            self._all_done.clear()

    def wait_all(self, timeout: float = TIMEOUT) -> None:
        """Wait until the expected number of runs completed (at most ``timeout`` seconds)."""
        if not self._all_done.wait(timeout):
            raise RuntimeError(f"only {self._count} of {self._expected} runs completed in time")
        self._raise_failures()

    def wait_run(self, run_id: str) -> float:
        """Wait until run ``run_id`` completed; return ``time.perf_counter()`` at completion."""
        with self._lock:
            waiter = self._events.setdefault(run_id, threading.Event())
        if not waiter.wait(TIMEOUT):
            self._raise_failures()
            raise RuntimeError(f"run {run_id} did not complete in time")
        with self._lock:
            del self._events[run_id]
            return self._completed_at.pop(run_id)

    def _raise_failures(self) -> None:
        """Raise if any benchmark run failed or was cancelled."""
        if self.failures:
            raise RuntimeError(f"benchmark runs did not complete: {self.failures[:3]}")


class StatementCounter:
    """Counts SQL statements and commits on an engine while :meth:`counting`.

    ``before_cursor_execute`` fires for every statement SQLAlchemy executes and for those
    squidmesh's prepared statements send to the driver directly (they announce themselves to
    the same listeners). The ``BEGIN`` that opens a transaction is not a statement here: psycopg
    sends it implicitly, and squidmesh hands SQLite's ``BEGIN IMMEDIATE`` to the driver.
    ``commit`` fires once per committed transaction, read-only ones included.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._statements = itertools.count()
        self._commits = itertools.count()
        self.statements = 0
        self.commits = 0

    def _on_statement(self, *_args: Any) -> None:
        """Count one statement (a ``before_cursor_execute`` listener)."""
        next(self._statements)  # itertools.count is thread-safe in CPython

    def _on_commit(self, *_args: Any) -> None:
        """Count one commit (a ``commit`` listener)."""
        next(self._commits)

    @contextmanager
    def counting(self) -> Iterator[StatementCounter]:
        """Count from entry to exit; the totals are in ``statements`` and ``commits`` after."""
        sa.event.listen(self.engine, "before_cursor_execute", self._on_statement)
        sa.event.listen(self.engine, "commit", self._on_commit)
        try:
            yield self
        finally:
            sa.event.remove(self.engine, "before_cursor_execute", self._on_statement)
            sa.event.remove(self.engine, "commit", self._on_commit)
            self.statements = next(self._statements)
            self.commits = next(self._commits)


def start_runs(
    client: Client,
    workflow: str,
    runs: int,
    payload: Callable[[int], dict[str, Any]] | None = None,
) -> None:
    """Start ``runs`` runs of ``workflow`` (their first jobs are queued).

    ``payload(index)`` gives the payload of run ``index`` (none without it).
    """
    for index in range(runs):
        client.start_run(workflow, payload(index) if payload is not None else None)


def latency(target: Target, runs: int) -> Result:
    """Row 1: one linear run at a time, from calling ``start_run`` to the run's completion.

    The clock starts before ``start_run``, so its transaction is included (its own p50 is
    reported as ``start_p50_ms``). One in-process worker with one thread, started once; two
    warm-up runs are not timed.
    """
    observer = CompletionObserver()
    with make_client(target.fresh(), [observer]) as client:
        client.migrate()
        samples: list[float] = []
        starts: list[float] = []
        with Worker(client, concurrency=1, poll_interval=POLL_INTERVAL):
            for index in range(WARM_UP_RUNS + runs):
                started = time.perf_counter()
                run = client.start_run(LINEAR)
                returned = time.perf_counter()
                completed = observer.wait_run(run.id)
                if index >= WARM_UP_RUNS:
                    samples.append(completed - started)
                    starts.append(returned - started)
    return Result(
        row=1,
        name="latency, 5-step linear run",
        workers="1 thread",
        concurrency=1,
        runs=runs,
        steps=runs * LINEAR_STEPS,
        seconds=sum(samples),
        p50_ms=percentile(samples, 0.50) * 1000,
        p99_ms=percentile(samples, 0.99) * 1000,
        start_p50_ms=percentile(starts, 0.50) * 1000,
    )


def _threads(
    target: Target, workflow: str, runs: int, threads: int, *, count: bool
) -> tuple[float, StatementCounter | None]:
    """Start ``runs`` runs, then time one in-process worker of ``threads`` threads on them."""
    observer = CompletionObserver()
    with make_client(target.fresh(), [observer]) as client:
        client.migrate()
        start_runs(client, workflow, runs)
        observer.expect(runs)
        counter = StatementCounter(client.database.engine) if count else None
        elapsed = drain(client, observer, threads, counter)
    return elapsed, counter


def drain(
    client: Client,
    observer: CompletionObserver,
    threads: int,
    counter: StatementCounter | None = None,
) -> float:
    """Seconds one in-process worker of ``threads`` threads takes to finish the expected runs.

    ``observer`` expects the runs already queued. With ``counter``, its statements and commits
    are counted meanwhile; the window closes before the worker stops, so its shutdown is not.
    """
    worker = Worker(client, concurrency=threads, poll_interval=POLL_INTERVAL)
    with counter.counting() if counter is not None else _nothing():
        started = time.perf_counter()
        worker.start()
        try:
            observer.wait_all()
        except BaseException:
            worker.stop()
            raise
        elapsed = time.perf_counter() - started
    worker.stop()
    return elapsed


@contextmanager
def _nothing() -> Iterator[None]:
    """A context manager that does nothing (no statement counting)."""
    yield None


def throughput_threads(target: Target, runs: int, threads: int, *, count: bool) -> Result:
    """Row 2 (and row 5 with ``count``): linear runs queued up front, one worker of N threads."""
    elapsed, counter = _threads(target, LINEAR, runs, threads, count=count)
    return Result(
        row=2,
        name="throughput, 5-step runs",
        workers=f"1 worker x {threads} thread{'s' * (threads != 1)}",
        concurrency=threads,
        runs=runs,
        steps=runs * LINEAR_STEPS,
        seconds=elapsed,
        statements=counter.statements if counter is not None else None,
        commits=counter.commits if counter is not None else None,
    )


def fan_out(target: Target, runs: int, threads: int) -> Result:
    """Row 4: fan-out / fan-in runs queued up front, one worker of ``threads`` threads."""
    elapsed, _ = _threads(target, FAN_OUT, runs, threads, count=False)
    return Result(
        row=4,
        name="fan-out 1 -> 10 -> 1",
        workers=f"1 worker x {threads} threads",
        concurrency=threads,
        runs=runs,
        steps=runs * FAN_OUT_STEPS,
        seconds=elapsed,
    )


def throughput_processes(target: Target, runs: int, processes: int, threads: int) -> Result:
    """Row 3: linear runs queued up front, then ``processes`` worker processes.

    The processes start, build their client and report ``ready``; the clock starts when they
    are all told to go and stops when the runs table shows every run completed.
    """
    url = target.fresh()
    with make_client(url) as client:
        client.migrate()
        start_runs(client, LINEAR, runs)
        with _worker_processes(url, processes, threads) as group:
            started = time.perf_counter()
            group.go()
            _wait_completed(client.database.engine, runs, group.check)
            elapsed = time.perf_counter() - started
    return Result(
        row=3,
        name="throughput, 5-step runs",
        workers=f"{processes} processes x {threads} threads",
        concurrency=processes * threads,
        runs=runs,
        steps=runs * LINEAR_STEPS,
        seconds=elapsed,
    )


def start_beside_worker(
    target: Target, queued: int, threads: int, window: float, *, require_busy: bool = True
) -> Result:
    """Row 9: ``start_run`` in this process while a worker process drains queued runs.

    ``queued`` 5-step runs are queued, one worker process of ``threads`` threads starts on
    them, and once it has completed a few, this process starts runs one after the other for
    ``window`` seconds, timing each call: what a web app's request that starts a run waits
    for while its worker is busy. ``runs`` is the number of starts, ``steps`` those of the runs
    the worker completed meanwhile (so that a row where either side starved shows it); the
    measurement fails if the
    worker ran out of queued runs within the window (the starts would not have met a busy
    database), unless ``require_busy`` is off (``--quick``, which only checks that the row
    works).
    """
    url = target.fresh()
    with make_client(url) as client:
        client.migrate()
        start_runs(client, LINEAR, queued)
        engine = client.database.engine
        with _worker_processes(url, 1, threads) as group:
            group.go()
            _wait_completed(engine, min(20, queued), group.check)
            before = _completed(engine)
            samples: list[float] = []
            opened = time.perf_counter()
            ends = time.monotonic() + window
            while time.monotonic() < ends:
                started = time.perf_counter()
                client.start_run(LINEAR)
                samples.append(time.perf_counter() - started)
            elapsed = time.perf_counter() - opened
            completed = _completed(engine)
            group.check()
    if require_busy and completed >= queued:
        raise RuntimeError(f"the worker drained all {queued} queued runs within the window")
    return Result(
        row=9,
        name="start_run beside a busy worker process",
        workers=f"1 process x {threads} threads",
        concurrency=threads,
        runs=len(samples),
        steps=(completed - before) * LINEAR_STEPS,
        seconds=elapsed,
        p50_ms=percentile(samples, 0.50) * 1000,
        p99_ms=percentile(samples, 0.99) * 1000,
    )


class _Processes:
    """Worker processes that are ready and wait for the word to go."""

    def __init__(self, processes: list[tuple[subprocess.Popen[str], IO[str]]]) -> None:
        self.processes = processes

    def go(self) -> None:
        """Let every process start its worker."""
        for process, _ in self.processes:
            assert process.stdin is not None  # noqa: S101 - piped
            process.stdin.write("go\n")
            process.stdin.flush()

    def check(self) -> None:
        """Raise if a process exited (with its stderr): the runs would never complete."""
        for process, errors in self.processes:
            if process.poll() is not None:
                errors.seek(0)
                raise RuntimeError(
                    f"a worker process exited with {process.returncode}:\n{errors.read()}"
                )


@contextmanager
def _worker_processes(url: str, count: int, threads: int) -> Iterator[_Processes]:
    """Start ``count`` worker processes and wait until they are ready.

    On exit every process gets SIGTERM (a graceful stop), then SIGKILL if it lingers.
    """
    processes: list[tuple[subprocess.Popen[str], IO[str]]] = []
    try:
        for _ in range(count):
            errors: IO[str] = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed below
            try:
                process = subprocess.Popen(  # noqa: S603 - our own module, argument list
                    [sys.executable, "-m", "benchmarks.worker", url, str(threads)],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    text=True,
                )
            except BaseException:
                errors.close()
                raise
            processes.append((process, errors))
        group = _Processes(processes)
        for process, _ in processes:
            assert process.stdout is not None  # noqa: S101 - piped above
            if process.stdout.readline().strip() != "ready":
                process.wait(timeout=30)
                group.check()
        yield group
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, errors in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            errors.close()


def _completed(engine: Engine) -> int:
    """How many runs completed."""
    with engine.connect() as connection:
        query = sa.text("SELECT count(*) FROM squidmesh_runs WHERE status = 'completed'")
        return int(connection.execute(query).scalar_one())


def _wait_completed(engine: Engine, runs: int, check: Callable[[], None]) -> None:
    """Poll the runs table until ``runs`` runs completed; fail on a failed run or a timeout.

    ``check`` is called on every poll too (it raises when a worker process died).
    """
    query = sa.text(
        "SELECT count(*) FILTER (WHERE status = 'completed'), "
        "count(*) FILTER (WHERE status IN ('failed', 'cancelled')) FROM squidmesh_runs"
    )
    deadline = time.monotonic() + TIMEOUT
    while True:
        with engine.connect() as connection:
            completed, failed = connection.execute(query).one()
        if failed:
            raise RuntimeError(f"{failed} benchmark runs failed")
        if completed >= runs:
            return
        check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {completed} of {runs} runs completed in time")
        time.sleep(0.02)
