"""One squidmesh writer at a time on a SQLite file, queued across threads and processes.

SQLite lets one connection write at a time. A connection that finds the write lock taken
(``BEGIN IMMEDIATE``) waits in SQLite's busy handler, which sleeps and tries again: after 1,
2, 5, 10, 15, 20, 25 ... 100 ms. A worker draining a queue takes the lock again within a
fraction of a millisecond of letting it go, so a writer that sleeps between tries rarely finds
it free: a run started from another process every 5 ms while a worker process drained queued
runs took 35 to 131 ms at the median, the slowest 0.8 to 2.9 s (``docs/performance.md``,
"Eighteenth session").

Every squidmesh write transaction on a SQLite file therefore passes a gate first: a lock of
this process, which its threads queue on, then an advisory lock (``flock``) on a file beside
the database, ``<database>-squidmesh-lock``, which processes wait for in the kernel. The
kernel wakes a waiter as soon as the holder lets go, and lets go for a process that ends, even
killed. A writer past the gate finds SQLite's write lock free, unless a writer that does not
use the gate holds it: another program (the ``sqlite3`` shell, the host's own writes), a
database opened by a ``file:`` URI, or a squidmesh writer that went on without the gate;
SQLite's busy handler still waits for those.

A writer waits for the gate at most its busy timeout, then goes on without it into SQLite's
busy handler, as it did before there was a gate (which may wait the busy timeout again): a
stuck holder costs the others a "database is locked" error, not a hang. ``flock`` itself
cannot time out, so a blocking wait happens in a thread of the gate's (its *keeper*), which
hands the lock to the writer that asked, or lets it go again when that writer stopped waiting.
Whatever goes wrong with the file (it cannot be opened, ``flock`` fails), writers go on without
the gate for a minute, and a warning says why. Windows has no ``flock``: no gate there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from _thread import get_ident
from pathlib import Path

__all__ = ["LOCK_FILE_SUFFIX", "WriteGate", "gate_for"]

logger = logging.getLogger(__name__)

LOCK_FILE_SUFFIX = "-squidmesh-lock"
"""The gate's file is the database's path with this suffix (as SQLite's ``-wal`` and ``-shm``)."""

KEEPER_IDLE = 5.0
"""Seconds a gate's keeper thread waits for a request before it ends."""

RETRY_OPEN = 60.0
"""Seconds writers go without the gate after its file could not be opened or locked."""

if sys.platform != "win32":
    import fcntl

    # Looked up once for the writers' own calls, a few per transaction (the keeper's go
    # through ``fcntl``).
    _flock = fcntl.flock
    _LOCK_NOW = fcntl.LOCK_EX | fcntl.LOCK_NB
    _UNLOCK = fcntl.LOCK_UN


class WriteGate:
    """The gate of one SQLite database file (see the module); :func:`gate_for` shares them.

    Args:
        path: The gate's file (the database's path and :data:`LOCK_FILE_SUFFIX`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = _LockFile()
        # Closed with the gate: a process may open many databases (a test suite does).
        weakref.finalize(self, self._file.close)
        self._reset()
        _every_gate.add(self)

    def _reset(self) -> None:
        # Everything here is this process's: a forked child starts again (the parent's file
        # descriptor would share the parent's lock, and its threads are not the child's).
        self._file.close()  # the parent's lock stays: the parent still has the file open
        self._closed_until = 0.0
        self._threads = threading.Lock()
        """Held by the thread of this process that is past the gate, or going through it."""
        self._holder: int | None = None
        """The thread past the gate (its ``threading.get_ident()``)."""
        self._state = threading.Condition(threading.Lock())
        self._keeper: threading.Thread | None = None
        self._pending = False
        """The keeper is taking the file's lock: only it may take it now (a lock taken
        meanwhile on the same file descriptor would be the keeper's too, and let go by it)."""
        self._wanted = False
        """The thread holding ``_threads`` waits for the keeper to hand it the file's lock."""
        self._granted = False

    def enter(self, timeout: float) -> bool:
        """Pass the gate: ``True`` once past it, ``False`` to go on without it.

        Without it: the calling thread is already past it (a transaction opened inside
        another one), ``timeout`` seconds passed, or the gate's file is unusable.
        """
        me = get_ident()
        if self._holder == me:
            return False
        if not self._threads.acquire(False):
            deadline = time.monotonic() + timeout
            if not self._threads.acquire(True, timeout):
                self._gave_up("a thread of this process")
                return False
            return self._enter_holding_threads(me, deadline)
        fd = self._file.fd
        # Not pending: the keeper holds no lock of this file descriptor and will take none
        # (only the thread holding ``_threads`` asks it to), so a lock taken here is ours.
        if fd is None or self._pending:
            return self._enter_holding_threads(me, time.monotonic() + timeout)
        try:
            _flock(fd, _LOCK_NOW)
        except BlockingIOError:
            return self._enter_holding_threads(me, time.monotonic() + timeout)
        except OSError as error:  # not for a lock held elsewhere
            try:
                self._unusable("lock", error)
            finally:
                self._threads.release()
            return False
        except BaseException:
            # Interrupted (a signal's handler raised), perhaps once the lock was taken: nobody
            # else locks this file descriptor now, so unlocking it is always right.
            try:
                self._unlock()
            finally:
                self._threads.release()
            raise
        # No exception can land between the lock taken and the holder set: a signal's handler
        # runs where the interpreter checks for them, at the call above (inside the ``try``),
        # not at the attribute store and return below.
        self._holder = me
        return True

    def leave(self) -> None:
        """Let the next writer through, after :meth:`enter` let a thread past.

        Any thread may call it: a transaction may end on another thread than it began on.
        """
        if self._holder is None:  # nobody is past it (a forked child unwinding, say)
            return
        try:
            self._holder = None
            self._unlock()
        finally:
            self._threads.release()

    def close(self) -> None:
        """Close the gate's file, unless a writer of this process is at the gate.

        It opens again when needed.
        """
        if not self._threads.acquire(False):
            return
        try:
            with self._state:
                if not self._pending:  # else the keeper waits on the file
                    self._file.close()
        finally:
            self._threads.release()

    def _enter_holding_threads(self, me: int, deadline: float) -> bool:
        """:meth:`enter` once this thread holds ``_threads``: the file's lock, as it comes."""
        try:
            locked = self._wait_for_file(deadline)
        except OSError as error:  # the non-blocking lock failed, with nothing pending
            locked = False
            try:
                self._unusable("lock", error)
            except BaseException:
                self._threads.release()
                raise
        except BaseException:
            self._threads.release()
            raise
        if not locked:
            self._threads.release()
            if time.monotonic() >= deadline:
                self._gave_up("another process")
            return False
        self._holder = me
        return True

    def _gave_up(self, holder: str) -> None:
        # Worth an operator's look: a writer held the gate for the whole busy timeout (stopped,
        # or stuck inside a transaction); this one goes on into SQLite's busy handler.
        logger.warning(
            "waited the busy timeout for the SQLite write gate %s, held by %s; going on without it",
            self.path,
            holder,
        )

    def _unlock(self) -> None:
        """Let go of the file's lock (by the thread holding ``_threads``, nothing pending)."""
        fd = self._file.fd
        if fd is None:
            return
        try:
            _flock(fd, _UNLOCK)
        except OSError as error:
            self._unusable("unlock", error)

    def _wait_for_file(self, deadline: float) -> bool:
        """Take the file's lock, waiting in the keeper until ``deadline``; ``False`` if not."""
        fd = self._file.fd if self._file.fd is not None else self._open()
        if fd is None:
            return False
        with self._state:
            if not self._pending:
                try:
                    _flock(fd, _LOCK_NOW)
                except BlockingIOError:
                    pass
                else:
                    return True
                if deadline <= time.monotonic():
                    return False
                if self._keeper is None:
                    keeper = threading.Thread(
                        target=self._keep, name="squidmesh-write-gate", daemon=True
                    )
                    try:
                        keeper.start()
                    except RuntimeError as error:  # no thread to be had: no gate this time
                        logger.warning("cannot start the SQLite write gate's keeper: %s", error)
                        return False
                    self._keeper = keeper
                self._pending = True
                self._state.notify_all()
            self._wanted = True
            try:
                while not self._granted:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._pending:  # timed out, or the keeper failed
                        return False
                    self._state.wait(remaining)
                return True
            except BaseException:
                if self._granted:  # handed over meanwhile: ours to let go
                    self._unlock()
                raise
            finally:
                # Not wanted any more: a lock the keeper takes later for this request, it lets
                # go at once (unless the next writer asks for it meanwhile).
                self._granted = self._wanted = False

    def _open(self) -> int | None:
        if time.monotonic() < self._closed_until:
            return None
        try:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except PermissionError:  # another user's file: a lock needs no write access
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            self._unusable("open", error)
            return None
        self._file.fd = fd
        return fd

    def _unusable(self, what: str, error: OSError) -> None:
        """Warn, close the file (which lets go of its lock), go without the gate a while.

        Called with nothing pending and by the thread holding ``_threads`` or the keeper:
        then no other thread of this process is past the gate or uses the file.
        """
        self._closed_until = time.monotonic() + RETRY_OPEN
        self._file.close()
        logger.warning(
            "cannot %s the SQLite write gate %s (%s): writers queue in SQLite's busy handler "
            "instead",
            what,
            self.path,
            error.strerror or error,
        )

    def _keep(self) -> None:
        """The keeper: take the file's lock for the writer that asks, hand it over.

        It ends after :data:`KEEPER_IDLE` seconds without a request (a new one starts with
        the next), so that gates no one contends for keep no thread; and if taking the lock
        fails, telling the waiting writer so.
        """
        try:
            while True:
                with self._state:
                    while not self._pending:
                        if not self._state.wait(KEEPER_IDLE) and not self._pending:
                            self._keeper = None  # under the lock: the next request starts one
                            return
                    # Open while pending: the writer that asked opened it, and it is closed
                    # only when nothing is pending.
                    fd = self._file.fd
                try:
                    if fd is None:
                        raise OSError("the gate's file is not open")
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError as error:
                    # Nothing is past the gate while a request is pending: the file may close.
                    self._unusable("lock", error)
                    with self._state:
                        self._pending = False
                        self._state.notify_all()
                    continue
                with self._state:
                    if self._wanted:
                        self._granted = True
                        self._state.notify_all()
                    else:  # the writer stopped waiting, and no other asked since
                        try:
                            fcntl.flock(fd, fcntl.LOCK_UN)
                        except OSError as error:
                            self._unusable("unlock", error)
                    # Last: a thread that reads it unset, without this lock, may take the
                    # file's lock itself, which it must not while the keeper still holds it.
                    self._pending = False
        finally:
            with self._state:
                if self._keeper is threading.current_thread():  # ended by an error of its own
                    self._keeper = None
                    if self._pending:  # the writer goes on without the gate
                        self._pending = False
                        self._state.notify_all()


class _LockFile:
    """The gate's open file: a box, so that its finalizer closes whichever one is open."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        self.fd: int | None = None

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            # Linux frees the descriptor (and its lock) even when close reports an error (an
            # I/O error on a network file system); raised here, it would end a writer's
            # transaction, or the keeper, for a file nobody uses any more.
            with contextlib.suppress(OSError):
                os.close(fd)


_gates: weakref.WeakValueDictionary[str, WriteGate] = weakref.WeakValueDictionary()
_gates_lock = threading.Lock()
_every_gate: weakref.WeakSet[WriteGate] = weakref.WeakSet()
"""Every gate of this process, for a forked child to reset."""


def gate_for(database: str) -> WriteGate | None:
    """The gate of the SQLite file ``database``, shared by every ``Database`` on it here.

    ``None`` where there is no ``flock`` (Windows).

    Shared, so that threads of this process queue on one lock, and a transaction opened inside
    another one on the same thread skips the gate whichever ``Database`` opened each.
    """
    if sys.platform == "win32":
        return None
    path = f"{Path(database).resolve()}{LOCK_FILE_SUFFIX}"
    with _gates_lock:
        gate = _gates.get(path)
        if gate is None:
            gate = _gates[path] = WriteGate(path)
        return gate


def _reset_after_fork() -> None:
    global _gates_lock
    _gates_lock = threading.Lock()
    for gate in list(_every_gate):
        gate._reset()  # this module's own hook


os.register_at_fork(after_in_child=_reset_after_fork)
