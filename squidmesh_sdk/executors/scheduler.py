"""The cron scheduler every worker runs: one activation per window, however many workers run.

For each declared cron trigger, ``squidmesh_cron_schedules`` holds the firing time of the last
window handled. When a window is due, a worker advances that row with a compare-and-set **in
the same transaction** that queues the activation job; a worker that loses the race (another
advanced the row first) queues nothing. The activation then starts the run through
:func:`~squidmesh_sdk.runtime.runner.start_cron_trigger`, whose transaction also deletes the
job: no window is started twice, and none is lost to a crash between the two.

A trigger seen for the first time is tracked from its most recent window, which is not run:
schedules start with the next window after the first worker that knows them starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from opentelemetry.trace import SpanKind

from squidmesh_sdk import arguments, telemetry
from squidmesh_sdk.executors.periodic import PeriodicThread
from squidmesh_sdk.graph import TriggerNode
from squidmesh_sdk.port import payloads
from squidmesh_sdk.port.executor import RuntimeView
from squidmesh_sdk.runtime import dispatcher, schedules
from squidmesh_sdk.runtime.schedules import CatchUp
from squidmesh_sdk.store import cron_schedules
from squidmesh_sdk.store.database import Transaction

__all__ = ["CronScheduler"]

logger = logging.getLogger("squidmesh_sdk.scheduler")


class CronScheduler:
    """Queues the activations of every cron trigger of a runtime's workflows when they fall due.

    Args:
        runtime: The runtime whose workflows are scheduled (its executor queues the
            activations): ``client.runtime``, or ``ExecutorBinding.runtime`` in an executor.
        catch_up: Windows missed while no worker ran: ``"latest"`` starts the most recent one,
            ``"all"`` each of them, ``"none"`` none.
    """

    def __init__(self, runtime: RuntimeView, *, catch_up: CatchUp = "latest") -> None:
        arguments.catch_up("catch_up", catch_up)
        self.runtime = runtime
        self.catch_up: CatchUp = catch_up
        self.triggers: list[tuple[str, TriggerNode]] = [
            (definition.name, trigger)
            for definition in runtime.workflows.values()
            for trigger in definition.triggers.values()
            if trigger.kind == "cron"
        ]
        self._next_due: dict[tuple[str, str], datetime] = {}
        self._thread: PeriodicThread | None = None

    def start(self, interval: float = 1.0) -> None:
        """Tick every ``interval`` seconds from a thread of its own, until :meth:`stop`.

        For processes that run no :class:`~squidmesh_sdk.Worker` (whose loop ticks already):
        Celery workers start one through their executor.
        """
        if self._thread is None or self._thread.interval != interval:
            self.stop()
            self._thread = PeriodicThread("squidmesh-cron", self.tick, interval)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread started by :meth:`start` (waiting up to ``timeout``)."""
        if self._thread is not None:
            self._thread.stop(timeout)

    def tick(self) -> int:
        """Queue every activation that is due now; return how many this worker queued."""
        now = self.runtime.clock.now()
        queued = 0
        for workflow, trigger in self.triggers:
            due = self._next_due.get((workflow, trigger.name))
            if due is not None and now < due:
                continue
            queued += self._schedule(workflow, trigger, now)
        return queued

    def _schedule(self, workflow: str, trigger: TriggerNode, now: datetime) -> int:
        queued = 0
        with self.runtime.transaction() as tx:
            last = cron_schedules.last_start(tx.connection, workflow, trigger.name)
            if last is None:
                latest = schedules.window_at_or_before(trigger, now)
                since = latest.start if latest is not None else now
                cron_schedules.start_tracking(tx, workflow, trigger.name, since)
                last = cron_schedules.last_start(tx.connection, workflow, trigger.name)
                assert last is not None  # noqa: S101 - tracked just now (or by another worker)
            windows, handled = schedules.due_windows(trigger, last, now, self.catch_up)
            if handled is not None and cron_schedules.advance(
                tx, workflow, trigger.name, expected=last, new=handled
            ):
                for window in windows:
                    signal = {
                        "signal_id": schedules.derive_signal_id(workflow, trigger.name, window),
                        "intended_window": window.to_dict(),
                    }
                    _enqueue_traced(self.runtime, tx, workflow, trigger.name, signal)
                    queued += 1
                if len(windows) != 1:  # catching up on missed windows, or skipping them
                    logger.info(
                        "cron windows missed while no worker ran",
                        extra={
                            "workflow": workflow,
                            "trigger": trigger.name,
                            "catch_up": self.catch_up,
                            "started": len(windows),
                        },
                    )
                last = handled
            elif handled is not None:
                # Another worker handled these windows first.
                last = cron_schedules.last_start(tx.connection, workflow, trigger.name) or last
        next_window = schedules.next_start(trigger, last)
        self._next_due[(workflow, trigger.name)] = next_window
        return queued


def _enqueue_traced(
    runtime: RuntimeView, tx: Transaction, workflow: str, trigger: str, signal: Mapping[str, Any]
) -> None:
    """Queue one activation under a ``send cron <workflow>`` PRODUCER span.

    The job carries the span's context, and the run the activation starts links to it.
    """
    attributes = {
        telemetry.WORKFLOW: workflow,
        telemetry.TRIGGER: trigger,
        telemetry.MESSAGING_SYSTEM: telemetry.SYSTEM,
        telemetry.MESSAGING_OPERATION: "send",
        telemetry.MESSAGING_OPERATION_NAME: "send",
    }
    with telemetry.span(
        f"send cron {workflow}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as send_span:
        carrier = telemetry.carrier_of(send_span)
        with payloads.carrying({"send": carrier} if carrier else None):
            dispatcher.before_executor(tx, runtime.executor)
            runtime.executor.enqueue_cron(tx, workflow, trigger, signal=signal)
