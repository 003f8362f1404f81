"""Named queues and per-workflow routing, shared by the executors that have queues."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from squidmesh_sdk import arguments, errors
from squidmesh_sdk.port.executor import DispatchMetadata
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["QueueRouting"]


class QueueRouting:
    """Named queues and per-workflow routing, shared by the executors that have queues.

    Args:
        queue: The queue jobs go to.
        queue_for: Optional per-workflow routing: workflow name to queue name (``None`` keeps
            the default), so that some workflows can get workers of their own.
    """

    def __init__(self, *, queue: str, queue_for: Callable[[str], str | None] | None) -> None:
        self.queue = arguments.queue_name("queue", queue)
        if queue_for is not None and not callable(queue_for):
            raise errors.InvalidArgument(
                "queue_for", f"queue_for must be a function of a workflow name, got {queue_for!r}"
            )
        self._queue_for = queue_for

    def queue_of(self, workflow: str) -> str:
        """The queue a workflow's jobs go to."""
        routed = self._queue_for(workflow) if self._queue_for is not None else None
        return routed or self.queue

    def enqueue_step(
        self, tx: Transaction, run: Run, step: str, *, schedule_in: float | None = None
    ) -> DispatchMetadata:
        """Queue one step of ``run``: a batch of one."""
        return self.enqueue_steps(tx, run, [step], schedule_in=schedule_in)[0]

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        """Queue several steps of ``run`` at once: all of them or, by raising, none."""
        raise NotImplementedError
