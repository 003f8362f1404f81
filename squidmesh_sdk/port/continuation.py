"""The worker continuation hook: a delivery may hand its worker the next job it queues.

Finishing a step usually queues the run's next step. Instead of going through the queue
(another commit to claim it, and a wake-up), a queue that supports it (the built-in database
queue) inserts that job already leased to the worker that finished the step, which performs it
at once. The lease, heartbeats and rescue work exactly as for a claimed job.

The runtime may go one step further and claim that next step in the same transaction
(:meth:`Continuation.take_claim`), so the step starts without a transaction of its own. This
module is the meeting point: the worker opens an offer (:func:`continuation`), the executor
fills it while inserting jobs, the runtime claims ahead through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import cast

from squidmesh_sdk.scoped import Scoped
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import prepared
from squidmesh_sdk.store.database import Transaction

__all__ = [
    "Continuation",
    "NextJobNotClaimed",
    "continuation",
    "current_continuation",
    "offering",
]


class NextJobNotClaimed(Exception):
    """Claiming the worker's next job failed in an outcome's transaction.

    That transaction is lost (on PostgreSQL a failed statement aborts it) and must be written
    again, without the claim: the outcome must not fail for a job that is not its own. The
    cause is the claim's exception. Never seen outside the runtime.
    """


@dataclass(slots=True)
class Continuation:
    """A worker thread's offer to perform, next, one job the current delivery queues."""

    worker: str
    lease: float
    queues: frozenset[str]
    accepting: Callable[[], bool] = lambda: True
    """Whether the worker still takes work (a stopping worker does not)."""
    job_id: int | None = None
    """The job being delivered, when its row may become the continuation's: a step job, which
    its delivery settles in the transaction that records the outcome (and queues what follows).
    Rewriting that row saves a delete and an insert per step."""
    reused_by: Transaction | None = None
    """The transaction that rewrote the delivered job's row into the continuation job: the
    delivery's own settlement must not delete it then."""
    reserved: bool = False
    pending: tuple[job_store.NewJob, int, Transaction] | None = None
    """The job inserted for this worker, its id, and the transaction that inserted it (a
    transaction that rolled back and was retried does not count: check it is the current one)."""
    claim: object | None = None
    """The runtime's claim of the pending job's step, made in the same transaction."""
    settled: bool = False
    """The runtime finished the pending job in the same transaction: nothing to hand over."""
    leased: tuple[job_store.Job, Transaction] | None = None
    """A queued job leased to this worker by the transaction that handed over nothing else
    (:meth:`lease_next_of_run`, :meth:`take_next_job`)."""
    claim_next: Callable[[Transaction], tuple[job_store.Job, object | None] | None] | None = None
    """The worker's claim of its next job in a given transaction, with its step claimed ahead
    when it simply starts (see :meth:`take_next_job`)."""
    job: job_store.Job | None = None
    """The job to perform next, once the transaction that inserted it committed."""
    found_nothing: bool = False
    """The claim of the worker's next job found nothing due, in a transaction that committed."""
    free_thread: bool = False
    """The offer is an idle thread's, not a delivering one's: the job it is handed is performed
    as soon as the transaction commits, so its step may be claimed ahead in that transaction
    (see :func:`squidmesh_sdk.runtime.runner.start_run`)."""
    delivered: job_store.Job | None = None
    """The job being delivered: what its row holds, for the rewrite that may reuse it
    (:func:`~squidmesh_sdk.store.jobs.reuse`)."""
    queue: str | None = None
    """The queue of the job being delivered (read at every dispatch: kept as a field)."""
    concurrency_key: str | None = None
    """The concurrency key of the job being delivered (the same)."""
    limited_queues: frozenset[str] = frozenset()
    """Queues with operator limits (as the worker last read them)."""
    rate_limited_queues: frozenset[str] = frozenset()
    """Queues with a rate limit (as the worker last read them)."""

    def may_continue_with(self, queue: str, concurrency_key: str | None) -> bool:
        """Whether a job of ``queue`` with ``concurrency_key`` may skip the claim.

        A continuation is leased without a claim, so it must not change what the claim
        counts: it stays in the delivered job's queue (whose running count it keeps, since
        the delivered job ends in the same transaction), with no key or the delivered job's
        key (same reason), and the queue has no rate limit (a claim spends a token, a
        continuation would not). A job of another queue continues only if that queue has no
        limits and the job no key. Anything else goes through the queue and a claim.
        """
        if queue not in self.queues:
            return False
        if queue == self.queue:
            return (
                concurrency_key is None or concurrency_key == self.concurrency_key
            ) and queue not in self.rate_limited_queues
        return concurrency_key is None and queue not in self.limited_queues

    def lease_next_of_run(self, tx: Transaction, run_id: str) -> str | None:
        """Lease the run's next queued step job in ``tx``, to perform next; its step, or ``None``.

        For a transaction that handed this worker nothing else (a fan-out's branch finished
        while its siblings wait): the sibling goes to this worker rather than waiting for a
        claim. Only a job :meth:`may_continue_with` allows in the delivered job's queue (a
        rate-limited queue spends a token per claim: none), and only while the worker takes
        work.
        """
        if self.reserved or self.job_id is None or self.queue is None or not self.accepting():
            return None
        if not self.may_continue_with(self.queue, self.concurrency_key):
            return None
        job = job_store.lease_next_of_run(
            tx,
            run_id,
            worker=self.worker,
            lease=self.lease,
            queue=self.queue,
            concurrency_key=self.concurrency_key,
        )
        if job is None:
            return None
        self._lease(tx, job)
        return job.step

    def take_next_job(self, tx: Transaction) -> None:
        """Claim this worker's next job in ``tx``, which handed it nothing, to perform next.

        The claim the worker would make once this delivery ends (the same statement: the
        worker's queues and held versions, priorities, flow control), made in the transaction
        that ends it instead of a transaction of its own; the job's step is claimed ahead too
        when it simply starts. Nothing when the worker stops taking work, or the queues have
        nothing due.

        Raises:
            NextJobNotClaimed: the claim failed; ``tx`` must be rolled back and the outcome
                written again (this offer claims nothing more).
        """
        if self.claim_next is None or self.reserved or not self.accepting():
            return
        try:
            taken = self.claim_next(tx)
            # What the claim still holds back fails here, not at the outcome's commit.
            prepared.flush(tx.connection)
        except Exception as exc:
            # Not again for this delivery: its worker claims the job once the thread is free.
            self.claim_next = None
            raise NextJobNotClaimed from exc
        if taken is None:
            tx.after_commit(self._found_nothing)
            return
        job, claim = taken
        self._lease(tx, job)
        self.claim = claim

    def _found_nothing(self) -> None:
        self.found_nothing = True

    def _lease(self, tx: Transaction, job: job_store.Job) -> None:
        # Nothing else is handed over, by this transaction or (if it rolls back, as a group
        # commit's may) by the one that writes the outcome again: that one leaves the job
        # queued, since what this one leased is handed over only if it commits.
        self.reserved = True
        self.leased = (job, tx)
        tx.after_commit(lambda: self._hand_over_leased(tx))

    def _hand_over_leased(self, tx: Transaction) -> None:
        if self.leased is not None and self.leased[1] is tx and not self.settled:
            self.job = self.leased[0]

    def step_to_claim(self, tx: Transaction, run_id: str) -> str | None:
        """The step of ``run_id`` that ``tx`` queued for this worker, if it may be claimed now.

        ``None`` when there is nothing to claim ahead: no job was handed to this worker, another
        transaction inserted it, it is not a step of that run, it is claimed already, or the
        worker is stopping (the step is left to whoever takes the job).
        """
        if self.pending is None or self.claim is not None or not self.accepting():
            return None
        new, _, inserted_by = self.pending
        if inserted_by is not tx or new.kind != "step" or new.run_id != run_id:
            return None
        return new.step

    def reused_in(self, tx: Transaction) -> bool:
        """Whether ``tx`` rewrote the delivered job's row into the continuation job."""
        return self.reused_by is not None and self.reused_by is tx

    def settle_pending(self, tx: Transaction) -> None:
        """End the job handed over in ``tx``: its step needed no execution (done, or nothing to do).

        The job inserted for this worker, or the one leased by :meth:`lease_next_of_run`.
        """
        if self.leased is not None and self.leased[1] is tx:
            job_id = self.leased[0].id
        else:
            assert self.pending is not None  # noqa: S101 - only after step_to_claim named a step
            job_id = self.pending[1]
        job_store.complete(tx, job_id, worker=self.worker)
        self.settled = True


_continuation: ContextVar[Continuation | None] = ContextVar("squidmesh_continuation", default=None)


def current_continuation() -> Continuation | None:
    """The continuation offer of the delivery this thread is performing, if any."""
    return _continuation.get()


def offering(offer: Continuation) -> Scoped[Continuation | None]:
    """Make ``offer`` this thread's continuation offer while the ``with`` block runs."""
    return Scoped(_continuation, offer)


def continuation(
    worker: str,
    lease: float,
    queues: Iterable[str],
    accepting: Callable[[], bool],
    job_id: int | None = None,
    *,
    delivered: job_store.Job | None = None,
    limited_queues: frozenset[str] = frozenset(),
    rate_limited_queues: frozenset[str] = frozenset(),
    claim_next: Callable[[Transaction], tuple[job_store.Job, object | None] | None] | None = None,
) -> AbstractContextManager[Continuation]:
    """Offer to take one continuation job while the ``with`` block runs (one delivery).

    ``job_id``: the delivered job, whose row the continuation may reuse (see
    :attr:`Continuation.job_id`) when ``delivered`` says what that row holds. ``delivered``,
    ``limited_queues`` and
    ``rate_limited_queues`` decide which jobs may continue (see
    :meth:`Continuation.may_continue_with`); without ``delivered``, any job of ``queues``.
    ``claim_next``: see :attr:`Continuation.claim_next`.
    """
    offer = Continuation(
        claim_next=claim_next,
        worker=worker,
        lease=lease,
        queues=frozenset(queues),
        accepting=accepting,
        job_id=job_id,
        delivered=delivered,
        queue=delivered.queue if delivered is not None else None,
        concurrency_key=delivered.concurrency_key if delivered is not None else None,
        limited_queues=limited_queues,
        rate_limited_queues=rate_limited_queues,
    )
    # ``offering``'s value is the offer itself (a ``Scoped``, not a generator: one a step).
    return cast("AbstractContextManager[Continuation]", offering(offer))
