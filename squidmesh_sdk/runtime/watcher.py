"""Waiting for a run to finish: woken by the database where it can, else a bounded poll.

A waiter reads the run, and if it is not finished sleeps until it is woken or its next look is
due, then reads it again. What wakes it:

- on PostgreSQL, the ``NOTIFY`` the runtime sends on ``RUN_CHANNEL`` (``store/runs.py``) in
  the transaction that finishes a run (delivered at commit, from whichever process committed).
  One :class:`RunWatcher` per client holds one connection, listening for every waiter of the
  client, on a daemon thread started by the first wait. Notifications are lost while that
  connection is down, so each (re)connection wakes every waiter to look again, and a waiter
  also looks every :data:`SAFETY_INTERVAL` seconds.
- in this process, the client's own runtime finishing the run (a worker thread or an in-process
  executor of the same client): the watcher is one of its observers.
- otherwise (SQLite, or PostgreSQL while the listening connection is down) the next look,
  after :data:`FIRST_POLL` seconds, then twice as long each time up to :data:`MAX_POLL`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from squidmesh_sdk import errors
from squidmesh_sdk.runtime import lifecycle
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RunEvent, RunTransitioned
from squidmesh_sdk.state_machine import TERMINAL
from squidmesh_sdk.store.database import Database
from squidmesh_sdk.store.listening import listening_connection, loss_level
from squidmesh_sdk.store.records import Run, canonical_run_id
from squidmesh_sdk.store.runs import RUN_CHANNEL, WATCHER_APPLICATION_NAME

__all__ = [
    "FIRST_POLL",
    "MAX_POLL",
    "SAFETY_INTERVAL",
    "RunWatcher",
    "WaitPlan",
    "wait_for_run",
]

logger = logging.getLogger(__name__)

FIRST_POLL = 0.05
"""Seconds before a waiter that nothing can wake looks at the run again the first time."""

MAX_POLL = 0.5
"""The longest a waiter that nothing can wake goes without looking at the run."""

SAFETY_INTERVAL = 5.0
"""How often a waiter that notifications wake still looks, in case one was missed."""

_LISTEN_POLL = 0.25  # seconds the listening thread blocks before it checks whether to stop
_MAX_BACKOFF = 5.0  # the longest pause between reconnections of the listening thread

Wake = Callable[[], None]


class RunWatcher:
    """Wakes the waiters of a run when it finishes; one per client.

    Also an observer of the client's runtime (:meth:`emit`): runs this process finishes wake
    their waiters at once, on any database.

    Args:
        database: The database runs are kept in; on PostgreSQL the watcher listens there.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._waiters: dict[str, list[Wake]] = {}
        self._listening = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def notifies(self) -> bool:
        """Whether the database can notify waiters (PostgreSQL)."""
        return self._database.dialect == "postgresql"

    @property
    def listening(self) -> bool:
        """Whether notifications are being received right now."""
        return self._listening.is_set()

    def subscribe(self, run_id: str, wake: Wake) -> Callable[[], None]:
        """Call ``wake`` (from any thread) whenever run ``run_id`` may have finished.

        Returns:
            The function that unsubscribes ``wake``.
        """
        with self._lock:
            self._waiters.setdefault(run_id, []).append(wake)
        if self.notifies:
            self._start_listening()

        def unsubscribe() -> None:
            with self._lock:
                wakes = self._waiters.get(run_id, [])
                if wake in wakes:
                    wakes.remove(wake)
                if not wakes:
                    self._waiters.pop(run_id, None)

        return unsubscribe

    def wake(self, run_id: str) -> None:
        """Wake the waiters of ``run_id``."""
        with self._lock:
            wakes = list(self._waiters.get(run_id, ()))
        for wake in wakes:
            wake()

    def wake_all(self) -> None:
        """Wake every waiter (notifications may have been missed)."""
        with self._lock:
            wakes = [wake for listed in self._waiters.values() for wake in listed]
        for wake in wakes:
            wake()

    def emit(self, event: RunEvent) -> None:
        """Observer hook: a run this process finished wakes its waiters."""
        if isinstance(event, RunTransitioned) and event.to_status in TERMINAL:
            self.wake(event.run.id)

    def close(self) -> None:
        """Stop listening (the thread ends within a quarter second); waiters then poll."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * _LISTEN_POLL)

    def _start_listening(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._pid = os.getpid()
                self._thread = None
                self._listening.clear()
            if self._stopping.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._listen, name="squidmesh-run-watcher", daemon=True
            )
            self._thread.start()

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                with listening_connection(self._database) as connection:
                    try:
                        # How the runtime knows someone listens (else it sends nothing).
                        connection.execute(f"SET application_name = '{WATCHER_APPLICATION_NAME}'")
                        connection.execute(f"LISTEN {RUN_CHANNEL}")
                        self._listening.set()
                        backoff = 0.1
                        # Runs that finished while nobody listened: their waiters look again.
                        # And once more after a moment: a transaction that found no listener
                        # just before this connection came up may commit just after their look.
                        self.wake_all()
                        looked_again = False
                        while not self._stopping.is_set():
                            for notify in connection.notifies(timeout=_LISTEN_POLL):
                                self.wake(notify.payload)
                            if not looked_again:
                                looked_again = True
                                self.wake_all()
                    finally:
                        self._listening.clear()
            except Exception as exc:  # noqa: BLE001 - whatever broke, waiters must not hang
                logger.log(
                    loss_level(exc),
                    "run watcher lost its database connection",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in": backoff},
                )
                self.wake_all()  # they poll until it is back
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)


class WaitPlan:
    """When a waiter looks at the run again, and when it gives up.

    Args:
        run_id: The run.
        timeout: Seconds to wait at most; ``None`` waits until the run finishes.
    """

    def __init__(self, run_id: str, timeout: float | None) -> None:
        self.run_id = run_id
        self.timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._poll = FIRST_POLL

    def check(self, run: Run) -> bool:
        """Whether ``run`` is finished.

        Raises:
            RunWaitTimeout: it is not, and the timeout has run out.
        """
        if run.terminal:
            return True
        if self._deadline is not None and time.monotonic() >= self._deadline:
            assert self.timeout is not None  # noqa: S101 - a deadline comes from a timeout
            raise errors.RunWaitTimeout(run.id, self.timeout, run.status)
        return False

    def pause(self, *, listening: bool) -> float:
        """Seconds to sleep before looking again, unless woken first."""
        if listening:
            pause = SAFETY_INTERVAL
        else:
            pause = self._poll
            self._poll = min(self._poll * 2, MAX_POLL)
        if self._deadline is not None:
            pause = min(pause, max(self._deadline - time.monotonic(), 0.0))
        return pause


def wait_for_run(
    runtime: Runtime,
    watcher: RunWatcher,
    run_id: str,
    *,
    timeout: float | None,
    include_history: bool = False,
) -> Run:
    """Block until run ``run_id`` is completed, failed or cancelled; return it.

    Raises:
        InvalidRunId, RunNotFound: no such run (also when it is deleted while waited for).
        RunWaitTimeout: ``timeout`` seconds passed first.
    """
    key = canonical_run_id(run_id)
    plan = WaitPlan(key, timeout)
    woken = threading.Event()
    unsubscribe = watcher.subscribe(key, woken.set)
    try:
        while True:
            # Cleared before the look: a wake-up that comes during it is not lost.
            woken.clear()
            run = lifecycle.inspect_run(runtime, key)
            if plan.check(run):
                break
            woken.wait(plan.pause(listening=watcher.listening))
    finally:
        unsubscribe()
    return lifecycle.inspect_run(runtime, key, include_history=True) if include_history else run
