"""SQLite's write gate: writers of several processes take turns instead of sleeping and retrying.

SQLite only: PostgreSQL locks rows, and its writers wait in the server, not in a busy handler.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from squidmesh_sdk import Client, Database, DatabaseExecutor, Worker
from squidmesh_sdk.store import write_gate
from squidmesh_sdk.store.write_gate import LOCK_FILE_SUFFIX, WriteGate
from tests.integration.worker.app import WORKFLOWS, make_client
from tests.integration.worker.conftest import wait_until
from tests.integration.worker.processes import ROOT, Spawn

QUEUED_RUNS = 1500
"""Enough five-step runs to keep a worker process of 8 threads writing for several seconds."""


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database of this test's own."""
    url = f"sqlite+pysqlite:///{tmp_path}/squidmesh.db"
    with make_client(url) as client:
        client.migrate()
    return url


def _completed(database: Database) -> int:
    with database.read() as connection:
        return int(
            connection.execute(
                sa.text("SELECT count(*) FROM squidmesh_runs WHERE status = 'completed'")
            ).scalar_one()
        )


def test_runs_start_promptly_beside_a_worker_process_that_keeps_sqlite_busy(
    sqlite_url: str, spawn_worker: Spawn
) -> None:
    # Without the gate a start waited in SQLite's busy handler, which sleeps 1, 2, 5 ... up to
    # 100 ms between tries and rarely found the lock free: a start every 5 ms for 3.5 s got
    # 12 to 14 through, the slowest 0.8 to 2.9 s; this test failed its count.
    with make_client(sqlite_url) as client:
        for _ in range(QUEUED_RUNS):
            client.start_run("five_steps")
        spawn_worker(sqlite_url, concurrency=8)
        wait_until(lambda: _completed(client.database) >= 20, what="the worker to drain")
        before = _completed(client.database)
        latencies: list[float] = []
        window_ends = time.monotonic() + 2.0
        while time.monotonic() < window_ends:
            started = time.perf_counter()
            client.start_run("one_step")
            latencies.append(time.perf_counter() - started)
        drained = _completed(client.database) - before
    # The worker wrote all along (so every start met a busy database)...
    assert drained >= 100, f"the worker completed only {drained} runs meanwhile"
    assert drained < QUEUED_RUNS - 20, "the worker ran out of queued runs"
    # ...and the starts took their turns: dozens, none waiting long.
    assert len(latencies) >= 50, f"only {len(latencies)} runs started in 2 s"
    # (Handovers are not first come, first served: a generous bound for a loaded machine.)
    assert max(latencies) < 5.0, f"the slowest start took {max(latencies):.2f} s"


HOLDER = """
import fcntl, os, sys, time
from datetime import UTC, datetime
import sqlalchemy as sa
from squidmesh_sdk import Database
mode, url, path = sys.argv[1:4]
if mode == "file":  # the gate's file lock only, as a stuck process that uses the gate would
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("holding", flush=True)
    time.sleep(600)
database = Database(url)
with database.transaction(datetime.now(UTC)) as tx:  # the gate and SQLite's write lock
    tx.connection.execute(sa.text("UPDATE squidmesh_maintenance SET task = task"))
    print("holding", flush=True)
    time.sleep(600)
"""


@contextmanager
def _holder(mode: str, url: str) -> Iterator[subprocess.Popen[str]]:
    """A process holding the gate (``file``: its lock only; ``transaction``: a transaction)."""
    path = sa.make_url(url).database
    assert path is not None
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, mode, url, path + LOCK_FILE_SUFFIX],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "holding"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def test_a_writer_goes_on_without_the_gate_once_its_busy_timeout_passed(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A process holds the gate and nothing else: SQLite's lock is free, so the start
    # succeeds, after waiting its busy timeout for the gate (it does not hang), and says so.
    with (
        _holder("file", sqlite_url),
        caplog.at_level(logging.WARNING, logger="squidmesh_sdk.store.write_gate"),
    ):
        database = Database(sqlite_url, busy_timeout=0.5)
        with make_client_on(database) as client:
            started = time.monotonic()
            run = client.start_run("one_step")
            waited = time.monotonic() - started
            assert client.inspect_run(run.id).status == "pending"
    assert 0.45 <= waited < 10, waited
    assert "waited the busy timeout for the SQLite write gate" in caplog.text
    assert "held by another process" in caplog.text


def test_a_stuck_writer_costs_a_database_is_locked_error_as_before(sqlite_url: str) -> None:
    # A process stuck inside a transaction holds the gate and SQLite's lock: the start waits
    # for the gate, then in SQLite's busy handler, and fails as it did before the gate.
    with _holder("transaction", sqlite_url):
        database = Database(sqlite_url, busy_timeout=0.5)
        with make_client_on(database) as client:
            started = time.monotonic()
            with pytest.raises(OperationalError, match="database is locked"):
                client.start_run("one_step")
            waited = time.monotonic() - started
    assert 0.9 <= waited < 10, waited


def test_a_step_outcome_that_meets_a_locked_database_is_written_once_it_is_free(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A process holds SQLite's write lock (and the gate) past twice the worker's busy timeout
    # while a step finishes: the outcome's BEGIN fails with "database is locked". The worker
    # must treat that as the database being unavailable (write the outcome again until it goes
    # in), not lose the outcome and run the step a second time.
    gate, started = tmp_path / "gate", tmp_path / "started"
    with (
        make_client_on(Database(sqlite_url, busy_timeout=0.2)) as client,
        Worker(client, concurrency=1, poll_interval=0.05),
        caplog.at_level(logging.WARNING),
    ):
        run = client.start_run("gated", {"gate": str(gate), "started": str(started)})
        wait_until(started.exists, what="the blocked step to start")
        with _holder("transaction", sqlite_url):
            started.unlink()
            gate.touch()  # the step returns now; its outcome meets the held lock
            time.sleep(1.5)
        finished = client.wait_for_run(run.id, timeout=30, include_history=True)
    assert finished.status == "completed"
    blocked = [step for step in finished.step_runs if step.step == "blocked"]
    assert [len(step.attempts) for step in blocked] == [1]
    assert not started.exists(), "the blocked step ran a second time"
    assert "database unavailable while recording a step outcome" in caplog.text


def test_a_worker_that_meets_a_locked_database_waits_and_goes_on(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The worker's own look at the queue fails with "database is locked" while another
    # process holds SQLite's lock: it backs off and looks again, instead of its loop ending.
    with (
        make_client_on(Database(sqlite_url, busy_timeout=0.2)) as client,
        Worker(client, concurrency=1, poll_interval=0.05),
        caplog.at_level(logging.WARNING),
    ):
        with _holder("transaction", sqlite_url):
            wait_until(
                lambda: "database unavailable; worker retrying" in caplog.text,
                what="the worker to meet the lock",
            )
        # Started by another client, so that only the worker's loop can find the run.
        with make_client(sqlite_url) as other:
            run = other.start_run("one_step")
            finished = other.wait_for_run(run.id, timeout=30)
    assert finished.status == "completed"


def test_the_gate_of_a_killed_process_opens_at_once(sqlite_url: str) -> None:
    with _holder("transaction", sqlite_url) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with make_client_on(Database(sqlite_url, busy_timeout=30)) as client:
            started = time.monotonic()
            run = client.start_run("one_step")
            waited = time.monotonic() - started
            assert client.inspect_run(run.id).status == "pending"
    assert waited < 5, waited


def test_after_commit_callbacks_run_with_the_gate_open(sqlite_url: str) -> None:
    # A callback may wait for another thread's write (an in-process executor's next step):
    # with the gate still closed, that thread would wait the whole busy timeout.
    database = Database(sqlite_url, busy_timeout=30)
    written = threading.Event()

    def write_elsewhere() -> None:
        with database.transaction(datetime.now(UTC)) as tx:
            tx.connection.execute(sa.text("UPDATE squidmesh_maintenance SET task = task"))
        written.set()

    def callback() -> None:
        other = threading.Thread(target=write_elsewhere)
        other.start()
        other.join(timeout=5)

    try:
        with database.transaction(datetime.now(UTC)) as tx:
            tx.connection.execute(sa.text("UPDATE squidmesh_maintenance SET task = task"))
            tx.after_commit(callback)
        assert written.wait(timeout=0), "the callback's thread still waited for the gate"
    finally:
        written.wait(timeout=60)
        database.dispose()


def test_a_transaction_inside_another_on_one_thread_does_not_wait_for_the_gate(
    sqlite_url: str,
) -> None:
    # As before the gate, it goes straight to SQLite, whose lock the outer one holds: a
    # "database is locked" error after the busy timeout, and the outer one still commits.
    database = Database(sqlite_url, busy_timeout=1.0)
    try:
        with database.transaction(datetime.now(UTC)) as outer:
            outer.connection.execute(sa.text("UPDATE squidmesh_maintenance SET task = task"))
            started = time.monotonic()
            with (
                pytest.raises(OperationalError, match="database is locked"),
                database.transaction(datetime.now(UTC)) as inner,
            ):
                inner.connection.execute(sa.text("UPDATE squidmesh_maintenance SET task = task"))
            waited = time.monotonic() - started
        # Waiting for the gate first would have added a second busy timeout.
        assert waited < 1.9, waited
        with database.transaction(datetime.now(UTC)) as after:
            after.connection.execute(sa.text("UPDATE squidmesh_maintenance SET task = task"))
    finally:
        database.dispose()


def _enter_in_child(gate: WriteGate, go: Any, results: multiprocessing.Queue[bool]) -> None:
    go.wait(timeout=30)
    results.put(gate.enter(0.5))


def test_a_forked_child_queues_at_the_gate_as_another_process(tmp_path: Path) -> None:
    gate = WriteGate(str(tmp_path / "forked.db-squidmesh-lock"))
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[bool] = context.Queue()
    # Forked while the parent is past the gate: the child must not share the parent's lock
    # (it would pass at once), nor keep its copy of the parent's thread lock (it would never
    # pass again).
    assert gate.enter(0.5)
    try:
        go = context.Event()
        child = context.Process(target=_enter_in_child, args=(gate, go, results))
        child.start()
        go.set()
        assert results.get(timeout=30) is False  # the parent is still past the gate
        child.join(timeout=30)
        go = context.Event()
        child = context.Process(target=_enter_in_child, args=(gate, go, results))
        child.start()
    finally:
        gate.leave()
    go.set()
    assert results.get(timeout=30) is True  # the parent let go after the fork
    child.join(timeout=30)


def test_writes_go_on_when_the_gate_file_cannot_be_opened(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = sa.make_url(sqlite_url).database
    assert path is not None
    lock_file = Path(path + LOCK_FILE_SUFFIX)
    lock_file.unlink()  # made by the migration's transaction
    lock_file.mkdir()  # a directory where the file would be
    with (
        caplog.at_level(logging.WARNING, logger="squidmesh_sdk.store.write_gate"),
        make_client_on(Database(sqlite_url)) as client,
    ):
        run = client.start_run("one_step")
        assert client.inspect_run(run.id).status == "pending"
    assert "cannot open the SQLite write gate" in caplog.text


@contextmanager
def make_client_on(database: Database) -> Iterator[Client]:
    """A database-queue client on ``database``, which is disposed with it."""
    try:
        with Client(database, WORKFLOWS, executor=DatabaseExecutor()) as client:
            yield client
    finally:
        database.dispose()


def _open_gate_files(directory: Path) -> list[str]:
    """The gate files in ``directory`` that this process has open (Linux: ``/proc/self/fd``)."""
    names = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:  # the directory's own descriptor, closed meanwhile
            continue
        if target.startswith(str(directory)) and target.endswith(LOCK_FILE_SUFFIX):
            names.append(target)
    return names


def test_disposed_or_dropped_databases_close_their_gate_files(tmp_path: Path) -> None:
    # A process may open many databases (a test suite does): their gate files must not pile up.
    assert _open_gate_files(tmp_path) == []
    for index in range(20):
        database = Database(f"sqlite+pysqlite:///{tmp_path}/disposed_{index}.db")
        with database.transaction(datetime.now(UTC)) as tx:
            tx.connection.execute(sa.text("SELECT 1"))
        assert len(_open_gate_files(tmp_path)) == 1
        database.dispose()
        assert _open_gate_files(tmp_path) == []
        with database.transaction(datetime.now(UTC)) as tx:  # still usable: opened again
            tx.connection.execute(sa.text("SELECT 1"))
        assert len(_open_gate_files(tmp_path)) == 1
        database.dispose()
    dropped = WriteGate(str(tmp_path / "dropped.db-squidmesh-lock"))
    assert _passes(dropped, 1.0)
    assert len(_open_gate_files(tmp_path)) == 1
    del dropped
    gc.collect()
    assert _open_gate_files(tmp_path) == []


def _passes(gate: WriteGate, timeout: float) -> bool:
    """Whether a writer gets past ``gate`` within ``timeout`` (it leaves again at once)."""
    if not gate.enter(timeout):
        return False
    gate.leave()
    return True


def _gates(tmp_path: Path, count: int) -> list[WriteGate]:
    """``count`` gates on one file: each behaves as another process's (a file of its own)."""
    return [WriteGate(str(tmp_path / f"shared.db{LOCK_FILE_SUFFIX}")) for _ in range(count)]


def test_one_writer_at_a_time_through_gates_that_hand_over_and_time_out(tmp_path: Path) -> None:
    # Three "processes" of three threads; some threads wait seconds, others a fraction of a
    # millisecond, so that handovers, waits given up and requests taken over by the next
    # writer all happen.
    inside, most = [0], [0]
    entries: dict[float, int] = {5.0: 0, 0.0005: 0}
    gave_up: dict[float, int] = {5.0: 0, 0.0005: 0}
    count = threading.Lock()

    def writer(gate: WriteGate, timeout: float) -> None:
        for _ in range(100):
            if not gate.enter(timeout):
                with count:
                    gave_up[timeout] += 1
                continue
            try:
                with count:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    entries[timeout] += 1
                time.sleep(0.0005)
                with count:
                    inside[0] -= 1
            finally:
                gate.leave()

    threads = [
        threading.Thread(target=writer, args=(gate, timeout))
        for gate in _gates(tmp_path, 3)
        for timeout in (5.0, 0.0005, 5.0)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert most[0] == 1
    assert (entries[5.0], gave_up[5.0]) == (6 * 100, 0)  # the patient ones always got through
    assert entries[0.0005] + gave_up[0.0005] == 3 * 100
    assert gave_up[0.0005] > 0  # and the impatient ones did give up sometimes
    for gate in _gates(tmp_path, 1):
        assert _passes(gate, 0)  # nobody holds it any more


class _DawdlingKeeper:
    """``fcntl`` whose keeper threads dawdle after taking the lock, before handing it over."""

    LOCK_EX, LOCK_NB, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN
    dawdle = 0.5

    @classmethod
    def flock(cls, fd: int, operation: int) -> None:
        fcntl.flock(fd, operation)
        if operation == fcntl.LOCK_EX and threading.current_thread().name.endswith("-gate"):
            time.sleep(cls.dawdle)


def test_a_writer_never_shares_a_lock_its_keeper_took_for_a_wait_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer that found the gate's lock taken elsewhere asks its keeper and gives up; the
    # keeper takes the lock later, to let it go again. A writer of the same gate meanwhile
    # must wait for the keeper, not lock the file itself: a lock on the same file descriptor
    # would be the keeper's, let go by it while the writer is still inside.
    monkeypatch.setattr(write_gate, "fcntl", _DawdlingKeeper)
    mine, elsewhere = _gates(tmp_path, 2)
    assert _passes(mine, 0)  # opens its file
    assert elsewhere.enter(0)
    gave_up = threading.Thread(target=lambda: mine.enter(0.1))
    gave_up.start()
    gave_up.join(timeout=10)
    elsewhere.leave()  # the keeper takes the lock now, for nobody, and dawdles
    time.sleep(0.1)
    assert mine.enter(5.0)  # handed over by the keeper once it stops dawdling
    try:
        time.sleep(_DawdlingKeeper.dawdle)
        assert not elsewhere.enter(0), "the gate let two writers in"
    finally:
        mine.leave()
    assert _passes(elsewhere, 0)


def test_a_wait_interrupted_leaves_the_gate_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, waiter, other = _gates(tmp_path, 3)
    assert holder.enter(1.0)
    original = waiter._state.wait

    def interrupted(timeout: float | None = None) -> bool:
        monkeypatch.setattr(waiter._state, "wait", original)
        raise KeyboardInterrupt

    monkeypatch.setattr(waiter._state, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        waiter.enter(5.0)
    holder.leave()
    time.sleep(0.3)  # the keeper takes the lock meanwhile
    # The lock its keeper takes for the interrupted wait is let go at once: others get it...
    assert other.enter(5.0)
    # ...and the interrupted gate queues behind them again.
    assert not waiter.enter(0.3)
    other.leave()
    assert _passes(waiter, 5.0)


def test_a_keeper_that_ended_idle_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_gate, "KEEPER_IDLE", 0.05)
    holder, waiter = _gates(tmp_path, 2)
    for _ in range(2):
        held = threading.Event()

        def hold(held: threading.Event) -> None:
            assert holder.enter(1.0)
            held.set()
            time.sleep(0.1)
            holder.leave()

        holding = threading.Thread(target=hold, args=(held,))
        holding.start()
        assert held.wait(timeout=10)
        assert _passes(waiter, 5.0)  # waits in the keeper for the holder to let go
        holding.join(timeout=10)
        wait_until(lambda: waiter._keeper is None, timeout=10, what="the keeper to end idle")


def test_a_failed_transaction_opens_the_gate(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    try:

        def fail_inside() -> None:
            with database.transaction(datetime.now(UTC)) as tx:
                tx.connection.execute(sa.text("UPDATE squidmesh_maintenance SET task = task"))
                raise RuntimeError("the block failed")

        with pytest.raises(RuntimeError, match="the block failed"):
            fail_inside()
        # Another "process" finds the gate free.
        elsewhere = WriteGate(f"{sa.make_url(sqlite_url).database}{LOCK_FILE_SUFFIX}")
        assert _passes(elsewhere, 0)
    finally:
        database.dispose()


def test_a_gate_whose_lock_fails_is_left_alone_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (gate,) = _gates(tmp_path, 1)
    assert _passes(gate, 1.0)  # the file is open
    real = write_gate._flock
    failing = [True]

    def flock(fd: int, operation: int) -> None:
        if failing[0] and operation != fcntl.LOCK_UN:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        real(fd, operation)

    monkeypatch.setattr(write_gate, "_flock", flock)
    with caplog.at_level(logging.WARNING, logger="squidmesh_sdk.store.write_gate"):
        assert not gate.enter(1.0)  # no gate: the writer goes on without it, at once
    assert "cannot lock the SQLite write gate" in caplog.text
    assert _open_gate_files(tmp_path) == []  # closed, so no lock of it lingers
    failing[0] = False
    assert not gate.enter(1.0)  # not tried again for a while
    gate._closed_until = 0.0
    assert _passes(gate, 1.0)  # the pause over: the gate is back


def test_a_gate_file_whose_close_fails_is_still_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A network file system may report an I/O error when the file is closed (Linux frees the
    # descriptor anyway): the writer still goes on, without the gate, instead of failing.
    (gate,) = _gates(tmp_path, 1)
    assert _passes(gate, 1.0)
    real_close = os.close

    def failing_close(fd: int) -> None:
        real_close(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    def failing_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(write_gate, "_flock", failing_flock)
    monkeypatch.setattr(write_gate.os, "close", failing_close)
    with caplog.at_level(logging.WARNING, logger="squidmesh_sdk.store.write_gate"):
        assert not gate.enter(1.0)
    monkeypatch.undo()
    assert "cannot lock the SQLite write gate" in caplog.text
    assert _open_gate_files(tmp_path) == []


def test_disposing_a_database_keeps_a_gate_another_thread_is_past(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    other = Database(sqlite_url)  # the same file, the same gate in this process
    inside, done = threading.Event(), threading.Event()

    def write() -> None:
        with database.transaction(datetime.now(UTC)) as tx:
            tx.connection.execute(sa.text("UPDATE squidmesh_maintenance SET task = task"))
            inside.set()
            done.wait(timeout=30)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert inside.wait(timeout=30)
        other.dispose()
        # Another "process" still finds the gate taken.
        elsewhere = WriteGate(f"{sa.make_url(sqlite_url).database}{LOCK_FILE_SUFFIX}")
        assert not elsewhere.enter(0.2)
    finally:
        done.set()
        writer.join(timeout=30)
        database.dispose()
    assert _passes(elsewhere, 1.0)


def test_a_gate_entered_on_one_thread_may_be_left_on_another(tmp_path: Path) -> None:
    # A transaction may end on another thread than it began on (a generator finalized
    # elsewhere): the gate must open all the same.
    mine, elsewhere = _gates(tmp_path, 2)
    assert mine.enter(1.0)
    leaving = threading.Thread(target=mine.leave)
    leaving.start()
    leaving.join(timeout=10)
    assert _passes(elsewhere, 1.0)
    assert _passes(mine, 1.0)


class _FailingKeeper:
    """``fcntl`` whose blocking ``flock`` (the keeper's) fails, as on a file system without it."""

    LOCK_EX, LOCK_NB, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN

    @staticmethod
    def flock(fd: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        fcntl.flock(fd, operation)


def test_a_keeper_that_cannot_lock_sends_its_writer_on_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(write_gate, "fcntl", _FailingKeeper)
    mine, elsewhere = _gates(tmp_path, 2)
    assert elsewhere.enter(1.0)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="squidmesh_sdk.store.write_gate"):
            assert not mine.enter(30.0)  # not after its whole timeout: the keeper said so
        assert time.monotonic() - started < 5
        assert "cannot lock the SQLite write gate" in caplog.text
    finally:
        elsewhere.leave()
    assert _passes(elsewhere, 1.0)  # nothing of the failed request holds the lock


def test_a_keeper_that_cannot_start_sends_its_writer_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class NoThread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    mine, elsewhere = _gates(tmp_path, 2)
    assert _passes(mine, 1.0)  # its file is open
    monkeypatch.setattr(write_gate.threading, "Thread", NoThread)
    assert elsewhere.enter(1.0)
    try:
        with caplog.at_level(logging.WARNING, logger="squidmesh_sdk.store.write_gate"):
            assert not mine.enter(30.0)
        assert "cannot start the SQLite write gate's keeper" in caplog.text
    finally:
        elsewhere.leave()
    monkeypatch.undo()
    assert _passes(mine, 1.0)  # and the gate works again once threads can start
