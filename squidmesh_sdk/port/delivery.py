"""What a queue that owns a job contributes to executing it.

The built-in database queue deletes its job row *inside* the transaction that records the
step's outcome, so "the step's result is saved" and "the job is done" commit together and a
crash can never leave one without the other. It also tells the runtime when the previous
delivery's worker is known to be dead, so the step it left running is taken over at once.
"""

from __future__ import annotations

from collections.abc import Callable

from squidmesh_sdk.store.database import Transaction

__all__ = ["Delivery"]


class Delivery:
    """A delivered job's part in its own execution.

    Args:
        reclaim: The previous delivery of this job was lost with its worker: a step still
            marked running is taken over (its attempt recorded as abandoned).
        settle: Called inside the transaction that records the delivery's outcome (typically
            deleting the job); not called when the delivery ends without one.
        queue: The queue the job came from (``messaging.destination.name`` on its span).
        message_id: The queue's id of the job (``messaging.message.id`` on its span).
    """

    __slots__ = ("_settle", "claim", "message_id", "queue", "reclaim", "settled")

    def __init__(
        self,
        *,
        reclaim: bool = False,
        settle: Callable[[Transaction], None] | None = None,
        claim: object | None = None,
        queue: str | None = None,
        message_id: str | None = None,
    ) -> None:
        self.reclaim = reclaim
        self.queue = queue
        self.message_id = message_id
        self._settle = settle
        self.claim = claim
        """The step's claim, already made by the transaction that queued this job."""
        self.settled = False
        """True once a transaction that called ``settle`` has committed."""

    def settle_in(self, tx: Transaction) -> None:
        """Settle the job in ``tx``; :attr:`settled` turns true when ``tx`` commits."""
        if self._settle is None or self.settled:
            return
        self._settle(tx)
        tx.after_commit(self._mark_settled)

    def _mark_settled(self) -> None:
        self.settled = True
