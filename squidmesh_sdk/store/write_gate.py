"""One squidmesh writer at a time on a SQLite file, queued across threads and processes.

SQLite lets one connection write at a time. A connection that finds the write lock taken
(``BEGIN IMMEDIATE``) waits in SQLite's busy handler, which sleeps and tries again: after 1,
2, 5, 10, 15, 20, 25 ... 100 ms. A worker draining a queue takes the lock again within a
fraction of a millisecond of letting it go, so a writer that sleeps between tries rarely finds
it free: a run started from another process while a worker process drained queued runs took 55
to 131 ms at the median and up to 2.7 s (``docs/performance.md``), and a second worker process
added nothing.

Every squidmesh write transaction on a SQLite file therefore passes a gate first: a lock of
this process, which its threads queue on, then an advisory lock (``flock``) on a file beside
the database, ``<database>-squidmesh-lock``, which processes wait for in the kernel. The
kernel wakes a waiter as soon as the holder lets go, and lets go for a process that ends, even
killed. A writer past the gate finds SQLite's write lock free, unless a program that does not
use the gate (the ``sqlite3`` shell, the host's own writes) holds it: SQLite's busy handler
still waits for those.

A writer waits for the gate at most the database's busy timeout, then goes on without it into
SQLite's busy handler, as it did before there was a gate: a stuck holder costs what it always
did, a "database is locked" error once the busy timeout has passed. ``flock`` itself cannot
time out, so a blocking wait happens in a thread of the gate's (its *keeper*), which hands the
lock to the writer that asked, or lets it go again when that writer stopped waiting.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import weakref
from _thread import get_ident
from pathlib import Path

__all__ = ["LOCK_FILE_SUFFIX", "WriteGate"]

logger = logging.getLogger(__name__)

LOCK_FILE_SUFFIX = "-squidmesh-lock"
"""The gate's file is the database's path with this suffix (as SQLite's ``-wal`` and ``-shm``)."""


class WriteGate:
    """The gate of one SQLite database file (see the module).

    Args:
        database: The database file's path.
        timeout: Seconds a writer waits for the gate before going on without it.
    """

    def __init__(self, database: str, timeout: float) -> None:
        self.path = f"{Path(database).resolve()}{LOCK_FILE_SUFFIX}"
        self.timeout = timeout
        self._file = _LockFile()
        # Closed with the gate: a process may open many databases (a test suite does).
        weakref.finalize(self, self._file.close)
        self._reset()
        _gates.add(self)

    def _reset(self) -> None:
        # Everything here is this process's: a forked child starts again (the parent's file
        # descriptor would share the parent's lock, and its threads are not the child's).
        self._file.close()  # the parent's lock stays: the parent still has the file open
        self._broken = False
        self._threads = threading.Lock()
        """Held by the thread of this process that is past the gate, or going through it."""
        self._holder: int | None = None
        """The thread past the gate (its ``threading.get_ident()``)."""
        self._state = threading.Condition(threading.Lock())
        self._keeper: threading.Thread | None = None
        self._pending = False
        """The keeper is blocked taking the file's lock: only it may take it now (a lock taken
        meanwhile on the same file descriptor would be the keeper's too, and let go by it)."""
        self._wanted = False
        """The thread holding ``_threads`` waits for the keeper to hand it the file's lock."""
        self._granted = False

    def enter(self) -> bool:
        """Pass the gate: ``True`` once past it, ``False`` to go on without it.

        Without it: the calling thread is already past it (a transaction opened inside
        another one), the timeout passed, or the gate's file cannot be opened.
        """
        me = get_ident()
        if self._holder == me or self._broken:
            return False
        if not self._threads.acquire(blocking=False):
            deadline = time.monotonic() + self.timeout
            if not self._threads.acquire(timeout=self.timeout):
                return False
        else:
            deadline = None
        fd = self._file.fd
        # Not pending: the keeper holds no lock of this file descriptor and will not take one
        # (only the thread holding ``_threads`` asks it to), so the lock taken here is ours.
        if fd is not None and not self._pending:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                self._holder = me
                return True
        try:
            past = self._wait_for_file(deadline)
        except BaseException:
            self._threads.release()
            raise
        if not past:
            self._threads.release()
            return False
        self._holder = me
        return True

    def leave(self) -> None:
        """Let the next writer through (called by the thread that :meth:`enter` let past)."""
        self._holder = None
        try:
            fcntl.flock(self._file.fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        finally:
            self._threads.release()

    def _wait_for_file(self, deadline: float | None) -> bool:
        """Take the file's lock, waiting in the keeper for at most the timeout; ``False`` if not."""
        fd = self._file.fd if self._file.fd is not None else self._open()
        if fd is None:
            return False
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        with self._state:
            if not self._pending:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pass
                else:
                    return True
                self._pending = True
                if self._keeper is None:
                    self._keeper = threading.Thread(
                        target=self._keep, name="squidmesh-write-gate", daemon=True
                    )
                    self._keeper.start()
                self._state.notify_all()
            self._wanted = True
            while not self._granted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    # The keeper lets go of the lock when it gets it, unless another thread
                    # asks for it meanwhile.
                    self._wanted = False
                    return False
                self._state.wait(remaining)
            self._granted = self._wanted = False
            return True

    def _open(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            # As without a gate: writers wait in SQLite's busy handler.
            self._broken = True
            logger.warning(
                "cannot open the SQLite write gate %s (%s): writers queue in SQLite's busy "
                "handler instead",
                self.path,
                error.strerror,
            )
            return None
        self._file.fd = fd
        return fd

    def close(self) -> None:
        """Close the gate's file unless a writer is at the gate (it opens again when needed)."""
        if not self._threads.acquire(blocking=False):
            return
        try:
            with self._state:
                if not self._pending:  # else the keeper waits on the file
                    self._file.close()
        finally:
            self._threads.release()

    def _keep(self) -> None:
        """The keeper: take the file's lock for the writer that asks, hand it over.

        It ends after :data:`KEEPER_IDLE` seconds without a request (a new one starts with
        the next), so that gates no one contends for keep no thread.
        """
        while True:
            with self._state:
                while not self._pending:
                    if not self._state.wait(KEEPER_IDLE) and not self._pending:
                        self._keeper = None
                        return
                # Open while pending: the writer that asked opened it, and it is closed only
                # when no writer is at the gate and nothing is pending.
                fd = self._file.fd
            assert fd is not None  # noqa: S101 - see above
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._state:
                if self._wanted:
                    self._granted = True
                    self._state.notify_all()
                else:  # the writer stopped waiting, and no other asked since
                    fcntl.flock(fd, fcntl.LOCK_UN)
                # Last: a thread that reads it unset, without this lock, may take the file's
                # lock itself, which it must not while the keeper still holds it.
                self._pending = False


class _LockFile:
    """The gate's open file: a box, so that its finalizer closes whichever one is open."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        self.fd: int | None = None

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


KEEPER_IDLE = 5.0
"""Seconds a gate's keeper thread waits for a request before it ends."""

_gates: weakref.WeakSet[WriteGate] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for gate in list(_gates):
        gate._reset()  # this module's own hook


os.register_at_fork(after_in_child=_reset_after_fork)
