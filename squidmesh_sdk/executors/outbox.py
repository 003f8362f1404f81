"""The outbox relay: publishes committed outbox messages to a broker, at least once.

Executors whose broker cannot join the runtime's transaction (Celery) write their messages to
``squidmesh_outbox`` with the state change (:mod:`squidmesh_sdk.store.outbox`). A relay
publishes them once committed and due:

1. *take* due messages in a short transaction: their ``publish_at`` moves forward by a lease,
   so other relays leave them alone while no database lock is held during the publish;
2. publish each one to the broker;
3. in a second transaction, push the published ones ``redeliver_after`` seconds ahead and
   postpone the rest with backoff.

A published message stays in the table until the delivery it caused deletes it, in the
transaction that records that delivery's outcome. If the broker loses it, or the relay dies
after (2), it is published again later. The runtime treats a duplicate delivery as a no-op.
Delayed work (waits, retry backoff) stays in the table until due, so a broker never holds a
long ETA.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from squidmesh_sdk.clock import Clock
from squidmesh_sdk.executors.periodic import PeriodicThread
from squidmesh_sdk.store import outbox as outbox_store
from squidmesh_sdk.store.database import Database

__all__ = ["OutboxRelay", "Publish"]

logger = logging.getLogger("squidmesh_sdk.outbox")

Publish = Callable[[outbox_store.Message], None]
"""Publishes one message to the broker; raises if the broker did not take it."""

_MAX_POSTPONE = 5.0
"""A message the broker refused is tried again after 1, 2, 4, then every 5 seconds: one
connection attempt per relay pass is cheap, and a broker that is back gets its backlog soon."""


class OutboxRelay:
    """Publishes due outbox messages with ``publish``, on demand or from a thread of its own.

    Args:
        database: The runtime's database.
        clock: The runtime's clock (``publish_at`` is stamped with it).
        publish: Hands one message to the broker.
        interval: Seconds between two passes of the background thread when nothing wakes it.
        batch: The most messages one pass takes at once.
        lease: Seconds a taken message is left alone by other relays; it is published again
            after that if this relay neither published nor postponed it (it died).
        redeliver_after: Seconds after which a published message whose delivery has not
            deleted it yet is published again (the broker lost it, or it is still running).
    """

    def __init__(
        self,
        database: Database,
        clock: Clock,
        publish: Publish,
        *,
        interval: float = 1.0,
        batch: int = 100,
        lease: float = 30.0,
        redeliver_after: float = 300.0,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch!r}")
        if not lease > 0:
            raise ValueError(f"lease must be > 0 seconds, got {lease!r}")
        if not redeliver_after > 0:
            raise ValueError(f"redeliver_after must be > 0 seconds, got {redeliver_after!r}")
        self._database = database
        self._clock = clock
        self._publish = publish
        self.batch = batch
        self.lease = lease
        self.redeliver_after = redeliver_after
        self._thread = PeriodicThread("squidmesh-outbox-relay", self.relay, interval)

    def relay(self, ids: Sequence[int] | None = None) -> int:
        """Publish due messages (only ``ids``, if given) until none is left; return how many.

        A message the broker refuses is postponed with backoff and the pass stops there: the
        broker is probably down, and the next pass (or another relay) tries again.
        """
        published = 0
        while True:
            with self._database.transaction(self._clock.now()) as tx:
                taken = outbox_store.take(tx, lease=self.lease, limit=self.batch, ids=ids)
            if not taken:
                return published
            done, failed, error = self._publish_all(taken)
            with self._database.transaction(self._clock.now()) as tx:
                outbox_store.postpone(tx, done, delay=self.redeliver_after, error=None)
                if failed:
                    delay = min(_MAX_POSTPONE, 2.0 ** (min(m.attempts for m in failed) - 1))
                    outbox_store.postpone(tx, [m.id for m in failed], delay=delay, error=error)
            published += len(done)
            if failed:
                logger.warning(
                    "outbox relay could not publish; retrying later",
                    extra={"messages": len(failed), "error": error, "retry_in": delay},
                )
                return published

    def _publish_all(
        self, taken: list[outbox_store.Message]
    ) -> tuple[list[int], list[outbox_store.Message], str]:
        done: list[int] = []
        for index, message in enumerate(taken):
            try:
                self._publish(message)
            except Exception as exc:  # noqa: BLE001 - any broker failure postpones, never loses
                return done, taken[index:], f"{type(exc).__name__}: {exc}"
            done.append(message.id)
        return done, [], ""

    def wake(self) -> None:
        """Make the background thread run a pass now."""
        self._thread.wake()

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the background thread after its current pass (waiting up to ``timeout``)."""
        self._thread.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the background thread is running."""
        return self._thread.running
