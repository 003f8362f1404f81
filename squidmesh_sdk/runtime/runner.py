"""The entry point delivered work comes back through: ``perform(payload)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squidmesh_sdk.executors import payloads
from squidmesh_sdk.runtime import compensation, dispatcher, execution
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.delivery import Delivery
from squidmesh_sdk.runtime.events import RunCreated
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store.records import Run

__all__ = ["perform", "start_cron_trigger", "start_run"]


def start_run(
    runtime: Runtime, workflow: str, payload: object, *, trigger: str | None = None
) -> Run:
    """Create a run and dispatch its first work in one transaction.

    Raises:
        InvalidWorkflow: the workflow is not registered.
        InvalidTrigger, InvalidPayload: the payload does not fit the trigger; nothing is written.
        DispatchFailed: the executor refused the first step; nothing is written.
    """
    definition = runtime.definition(workflow)
    with runtime.transaction() as tx:
        run = run_store.create_run(tx, definition, payload, trigger=trigger)
        dispatcher.dispatch_run(runtime, tx, run)
        tx.events.insert(0, RunCreated(run))
    return run


def start_cron_trigger(
    runtime: Runtime,
    workflow: str,
    trigger: str,
    signal: Mapping[str, Any] | None = None,
) -> Run:
    """Start a run through cron trigger ``trigger``; its payload comes from defaults only.

    Raises:
        InvalidWorkflow, InvalidTrigger, InvalidPayload, DispatchFailed: as :func:`start_run`.
    """
    runtime.definition(workflow).trigger(trigger)
    return start_run(runtime, workflow, {}, trigger=trigger)


def perform(
    runtime: Runtime, payload: Mapping[str, Any], *, delivery: Delivery | None = None
) -> str:
    """Execute one delivered executor payload; return what the delivery did.

    ``delivery`` is how a queue that owns the job takes part (see
    :class:`~squidmesh_sdk.runtime.delivery.Delivery`); step deliveries settle it in the
    transaction that records their outcome.

    Step deliveries return ``"executed"``, ``"reconciled"``, ``"skipped"``, ``"cancelled"`` or
    ``"paused"``; cron deliveries ``"started"``; compensation deliveries ``"compensated"`` (or
    ``"skipped"`` for a run that is not failed).

    Raises:
        InvalidExecutorPayload: not a payload an executor produced.
        InvalidRunId, RunNotFound, InvalidWorkflow: the job names a run or workflow that is not
            there (for example a run deleted after its job was queued).
    """
    job = payloads.parse(payload)
    if isinstance(job, payloads.StepJob):
        return execution.execute_step(runtime, job.run_id, job.step, delivery=delivery)
    if isinstance(job, payloads.CronJob):
        start_cron_trigger(runtime, job.workflow, job.trigger, job.signal)
        return "started"
    return compensation.compensate(runtime, job.run_id)
