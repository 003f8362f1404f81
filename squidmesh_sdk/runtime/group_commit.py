"""Group commit: outcomes of steps that finish together are written in one transaction.

A worker with several delivery threads often has more than one step outcome to record at the
same moment. Each outcome is a short transaction ending in a commit, and a durable commit
waits for the disk (SQLite with ``synchronous=FULL`` holds its single write lock meanwhile);
writing the outcomes that are waiting in one transaction pays that wait once for all of them.

It adapts by itself (leader / follower): a thread with an outcome to write queues it; if no
thread is writing, it becomes the *leader*, takes everything queued (its own outcome first),
writes and commits it, and hands the lead to the first outcome queued meanwhile. A thread
alone never waits for anyone, so a lone step pays nothing; under load the groups grow up to
the number of delivery threads, since each thread has at most one outcome in flight.

Each outcome stays atomic with the dispatch it implies and independent of the others. An
outcome that raises gets its thread the exception (its usual handling follows: a stale result
is discarded, a refused one recorded as a failure, a lost connection retried) and the group's
transaction is rolled back; the other outcomes are then written again, without it, in a new
transaction, exactly as a lone outcome whose transaction was rolled back is written again.
(Savepoints would keep them, at two more statements per outcome on the common path; a failed
outcome is rare.) If the commit itself fails, every outcome of the group gets the error and
its thread retries it as it would its own. Outcomes are written in the order of their runs'
ids, so two groups (two workers) lock runs in the same order.

Each outcome runs in its own thread's context (``contextvars``: the continuation offer, the
current span), and its events and after-commit callbacks run in its own thread once the group
committed, as they would after a transaction of its own.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from squidmesh_sdk.clock import use_clock
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.scoped import Scoped
from squidmesh_sdk.store import prepared
from squidmesh_sdk.store.database import Transaction

__all__ = ["GroupCommit", "current", "grouping"]

Outcome = Callable[[Transaction], None]
"""Writes one outcome in the transaction it is given."""


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(slots=True, eq=False)
class _Entry:
    write: Outcome
    order: str
    context: contextvars.Context
    woken: threading.Lock = field(default_factory=_held_lock)
    """Released once to wake the entry's thread (done, or its turn to lead), which acquires it
    once to wait, unless it leads from the start: a lock is the cheapest one-shot signal between
    two threads (an ``Event`` makes a ``Condition`` and a lock per wait)."""
    done: bool = False
    error: BaseException | None = None
    tx: Transaction | None = None


class GroupCommit:
    """Writes outcomes submitted by several threads in shared transactions.

    Args:
        runtime: The runtime whose database the outcomes go to.
        max_group: The most outcomes one transaction takes.
    """

    def __init__(self, runtime: Runtime, *, max_group: int = 64) -> None:
        self.runtime = runtime
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Entry] = []
        self._leading = False
        self.groups = 0
        """Transactions committed (for tests and benchmarks)."""
        self.outcomes = 0
        """Outcomes they held."""

    def write(self, write: Outcome, *, order: str = "") -> None:
        """Write one outcome (``write(tx)``), alone or with others; return once committed.

        ``order``: outcomes of one group are written sorted by it (a run id).

        Raises:
            Exception: whatever ``write`` raised (then nothing of it was committed), or what
                committing the group raised.
        """
        entry = _Entry(write, order, contextvars.copy_context())
        with self._lock:
            self._queue.append(entry)
            leads = not self._leading
            self._leading = True
        if not leads:
            # Decided under the lock, so that each wait consumes exactly the one release meant
            # for it: the entry's group is done, or the entry is the next leader.
            entry.woken.acquire()
        if not entry.done:
            self._lead()  # its group holds this entry: the first one queued
        if entry.error is not None:
            raise entry.error
        tx = entry.tx
        assert tx is not None  # noqa: S101 - a committed entry has its transaction
        self.runtime.emit(tx.events)
        tx.run_after_commit()

    def _lead(self) -> None:
        with self._lock:
            group = self._queue[: self.max_group]
            del self._queue[: self.max_group]
        try:
            self._commit(sorted(group, key=lambda entry: entry.order))
        finally:
            successor: _Entry | None = None
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                else:
                    self._leading = False
            # Each entry's lock is released once: the group's once they are done (the leader's
            # too, which nobody waits on), the successor's to make it lead.
            for entry in group:
                entry.done = True
                entry.woken.release()
            if successor is not None:
                successor.woken.release()

    def _commit(self, group: list[_Entry]) -> None:
        """Write and commit ``group``; an outcome that raises is dropped and the rest retried."""
        pending = group
        while pending:
            failed: _Entry | None = None
            try:
                with self.runtime.transaction() as shared:
                    for entry in pending:
                        tx = Transaction(shared.connection, shared.now)
                        try:
                            entry.context.run(_in_clock, self.runtime, entry.write, tx)
                            # What the runtime adds before any commit (a finished child's job
                            # for its parent) reads this outcome's events, not the shared ones.
                            hook = self.runtime.before_commit
                            if hook is not None:
                                entry.context.run(hook, self.runtime, tx)
                            # Its pipelined statements too: a failure is this outcome's.
                            prepared.flush(shared.connection)
                        except Exception as exc:
                            failed, entry.error = entry, exc
                            raise _RollBack from exc
                        entry.tx = tx
            except _RollBack:
                # Everything is rolled back: the others are written again without it.
                pending = [entry for entry in pending if entry is not failed]
                for entry in pending:
                    entry.tx = None
                continue
            except BaseException as exc:
                for entry in pending:
                    entry.tx, entry.error = None, exc
                if not isinstance(exc, Exception):
                    raise
                return
            self.groups += 1
            self.outcomes += len(pending)
            return


class _RollBack(Exception):
    """Rolls back a group's transaction after one of its outcomes raised."""


def _in_clock(runtime: Runtime, write: Outcome, tx: Transaction) -> None:
    with use_clock(runtime.clock):
        write(tx)


_current: contextvars.ContextVar[GroupCommit | None] = contextvars.ContextVar(
    "squidmesh_group_commit", default=None
)


def current() -> GroupCommit | None:
    """The group commit this thread's outcomes go through, if its worker uses one."""
    return _current.get()


def grouping(group: GroupCommit | None) -> Scoped[GroupCommit | None]:
    """Send this thread's step outcomes through ``group`` while the block runs."""
    return Scoped(_current, group)
