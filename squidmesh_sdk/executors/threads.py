"""A worker's delivery threads: which are busy, which are reserved, when the loop must claim.

:class:`~squidmesh_sdk.executors.worker.Worker` keeps one :class:`DeliveryThreads`. Each thread
in use has a token (a thread that takes a continuation goes on with the same token). Besides
counting free threads, it decides two things, so that no job waits for the poll while a thread
is free and no claim is made that would find nothing:

- **whether a thread's end wakes the loop.** A thread whose last transaction claimed its next
  job and found nothing (committed) saw the queues empty then; a job queued since wakes the
  loop itself (an in-process or ``NOTIFY`` wake, or the poll). Unless the loop could not act
  on a wake since that claim began: woken while every thread was busy, or its claim capped by
  its free threads. Those threads *owe* the loop a claim, and the first of them to end wakes
  it (the loop's claim then covers every owed one).
- **whether the worker is idle**, so that a run started in its process may go straight to a
  free thread (:meth:`reserve`): its last claim, the loop's or a thread's, found nothing due,
  and no loop claim is being made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["DeliveryThreads"]


class DeliveryThreads:
    """The busy, reserved and free delivery threads of one worker, and its claim bookkeeping.

    Every method is thread-safe: the loop, the delivery threads, the heartbeat and the threads
    starting runs all call them.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._reservations_ended = threading.Condition(self._lock)
        self._busy: dict[object, int] = {}
        """Token of each thread performing a job, to that job's id."""
        self._reserved: set[object] = set()
        """Tokens of threads reserved for runs this process is starting."""
        self._claims_begun = 0
        self._claiming = False
        self._next_claim_begun: dict[object, int] = {}
        """Each thread's last next-job claim: the loop claims begun when it began."""
        self._found_nothing: dict[object, int] = {}
        """Threads whose delivery ended on a next-job claim that found nothing (same value)."""
        self._owe_a_claim: set[object] = set()
        self._idle = False

    def free(self) -> int:
        """How many threads are neither busy nor reserved."""
        with self._lock:
            return self._free()

    def _free(self) -> int:
        return self.concurrency - len(self._busy) - len(self._reserved)

    def job_ids(self) -> list[int]:
        """The jobs the busy threads are performing (their leases to renew)."""
        with self._lock:
            return list(self._busy.values())

    def occupy(self, token: object, job_id: int) -> None:
        """The thread of ``token`` performs ``job_id`` (a claimed job, or its continuation)."""
        with self._lock:
            self._busy[token] = job_id

    def vacate(self, token: object) -> None:
        """The thread of ``token`` never started its job (its pool refused it)."""
        with self._lock:
            self._busy.pop(token, None)

    # -- the loop's claims ---------------------------------------------------------------

    def begin_claim(self) -> int:
        """The loop, woken, claims for its free threads: how many (0: it claims nothing)."""
        with self._lock:
            free = self._free()
            if free <= 0:
                # Woken with every thread busy: what woke it waits for the next one to end.
                self._owe_a_claim.update(self._busy, self._reserved)
                self._idle = False
                return 0
            self._claims_begun += 1
            self._claiming = True  # no thread is reserved for a start meanwhile
            self._idle = False
            return free

    def end_claim(self, free: int, claimed: int | None) -> None:
        """The loop's claim for ``free`` threads took ``claimed`` jobs (``None``: it failed)."""
        with self._lock:
            self._claiming = False
            self._idle = claimed == 0
            if claimed == free:
                # Capped by the free threads: more may be due, for the busy ones to take.
                self._owe_a_claim.update(self._busy, self._reserved)

    # -- the delivery threads' claims ----------------------------------------------------

    def begin_next_claim(self, token: object) -> None:
        """The thread of ``token`` claims its next job: it sees every job a wake announced."""
        with self._lock:
            self._owe_a_claim.discard(token)
            self._next_claim_begun[token] = self._claims_begun

    def next_claim_took_a_job(self) -> None:
        """A thread's next-job claim found a job: the worker is not idle."""
        with self._lock:
            self._idle = False

    def delivery_ended(self, token: object, *, found_nothing: bool) -> None:
        """The thread of ``token`` delivered its last job.

        ``found_nothing``: its next-job claim found nothing, in a transaction that committed.
        """
        with self._lock:
            begun = self._next_claim_begun.pop(token, None)
            if found_nothing and begun is not None:
                self._found_nothing[token] = begun

    def thread_ended(self, token: object) -> bool:
        """The thread of ``token`` is free again: whether the loop must be woken to claim."""
        with self._lock:
            self._busy.pop(token, None)
            begun = self._found_nothing.pop(token, None)
            if begun is None or token in self._owe_a_claim:
                self._owe_a_claim.clear()  # the claim the loop makes now covers them all
                return True
            if begun == self._claims_begun and not self._claiming:
                self._idle = True  # no loop claim since that thread's: still true
            return False

    # -- threads reserved for starts -----------------------------------------------------

    def reserve(self, refused: Callable[[], bool]) -> object | None:
        """Reserve a free thread of an idle worker for a start: its token, or ``None``.

        ``refused``: read under the lock that :meth:`wait_for_reservations` waits on (a
        stopping worker reserves nothing once it waits for reservations).
        """
        with self._lock:
            if refused() or not self._idle or self._claiming or self._free() <= 0:
                return None
            token = object()
            self._reserved.add(token)
            return token

    def hand_over(self, token: object, job_id: int) -> None:
        """The reserved thread of ``token`` performs ``job_id``, which the start handed it."""
        with self._lock:
            self._busy[token] = job_id
            self._idle = False

    def end_reservation(self, token: object, *, handed: bool) -> bool:
        """The start is over; ``handed``: its thread got a job. Whether to wake the loop.

        A thread given back empty wakes the loop if the loop was woken meanwhile and found no
        thread (this one was reserved).
        """
        with self._lock:
            self._reserved.discard(token)
            self._reservations_ended.notify_all()
            if handed:
                return False
            woken_meanwhile = token in self._owe_a_claim
            self._owe_a_claim.discard(token)
            return woken_meanwhile

    def wait_for_reservations(self, timeout: float) -> None:
        """Wait, up to ``timeout`` seconds, until no thread is reserved."""
        with self._reservations_ended:
            self._reservations_ended.wait_for(lambda: not self._reserved, timeout=timeout)
