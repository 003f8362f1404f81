"""The entry point delivered work comes back through: ``perform(payload)``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pydantic_core
from opentelemetry.trace import Link
from sqlalchemy.exc import IntegrityError

from squidmesh_sdk import errors, telemetry
from squidmesh_sdk.port import payloads
from squidmesh_sdk.port.continuation import current_continuation
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import claiming, compensation, dispatcher, execution, schedules
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RunCreated
from squidmesh_sdk.store import run_creation, run_reads
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import SCHEDULE_KEY, Run

__all__ = [
    "CronStart",
    "perform",
    "request_fingerprint",
    "start_cron_trigger",
    "start_run",
    "start_run_once",
]


def start_run(
    runtime: Runtime,
    workflow: str,
    payload: object,
    *,
    trigger: str | None = None,
    context: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    start_key: str | None = None,
    start_request: str | None = None,
    delivery: Delivery | None = None,
    links: Sequence[Link] = (),
    priority: int | None = None,
) -> Run:
    """Create a run and dispatch its first work in one transaction.

    ``idempotency_key`` is a cron activation's schedule identity, ``start_key`` and
    ``start_request`` a caller's idempotency key and the fingerprint of its request (see
    :func:`start_run_once`). ``priority`` overrides the workflow's (already checked).

    Raises:
        InvalidWorkflow: the workflow is not registered.
        InvalidTrigger, InvalidPayload: the payload does not fit the trigger; nothing is written.
        DispatchFailed: the executor refused the first step; nothing is written.
        IntegrityError: another run already holds ``idempotency_key`` or ``start_key``
            (nothing is written).
    """
    definition = runtime.definition(workflow)
    attributes = {telemetry.WORKFLOW: workflow, telemetry.TRIGGER: trigger}
    with (
        telemetry.span(
            f"run {workflow}", attributes=attributes, links=links, new_trace=True
        ) as root,
        runtime.transaction() as tx,
    ):
        run = run_creation.create_run(
            tx,
            definition,
            payload,
            trigger=trigger,
            context=context,
            idempotency_key=idempotency_key,
            start_key=start_key,
            start_request=start_request,
            priority=priority,
            # Untraced here: a generated context still makes the run one trace in traced workers.
            trace_context=telemetry.carrier_of(root) or telemetry.generated_carrier(),
        )
        root.set_attribute(telemetry.RUN_ID, run.id)
        root.set_attribute(telemetry.TRIGGER, run.trigger)
        dispatcher.dispatch_run(runtime, tx, run)
        _claim_first_step_ahead(runtime, tx, run)
        tx.events.insert(0, RunCreated(run))
        if delivery is not None:
            delivery.settle_in(tx)
    return run


def _claim_first_step_ahead(runtime: Runtime, tx: Transaction, run: Run) -> None:
    """Start the run's first step in ``tx`` when its job went to an idle worker thread.

    That thread performs the job as soon as ``tx`` commits (see
    :meth:`Worker.offer_start <squidmesh_sdk.executors.worker.Worker.offer_start>`): its
    step starts here, as a worker's claim starts it, saving the step a transaction of its own.
    A step that does more than simply start is left to the delivery.
    """
    offer = current_continuation()
    if offer is None or not offer.free_thread:
        return
    step = offer.step_to_claim(tx, run.id)
    if step is not None:
        offer.claim = claiming.claim_step(runtime, tx, run.id, step, created=run)


def start_run_once(
    runtime: Runtime,
    workflow: str,
    payload: object,
    *,
    key: str,
    trigger: str | None = None,
    priority: int | None = None,
) -> tuple[Run, bool]:
    """Start a run of ``workflow`` with idempotency key ``key``, unless one was started with it.

    Returns the run and whether this call created it. A run already started with ``key``
    (through any trigger, by this process or another, finished or not) is returned as it is
    now, provided the request is the same one: the same trigger and the same payload as given
    (compared by :func:`request_fingerprint`, before defaults are filled in, so a payload
    default such as ``now()`` does not make a retried request a different one), and the run's
    priority when ``priority`` is given. Concurrent calls with one key create one run: the
    database's unique index on ``(workflow, start_key)`` decides, and the losers return the
    winner's run.

    Raises:
        InvalidWorkflow, InvalidTrigger, InvalidPayload: as :func:`start_run`; checked first,
            so a malformed request is refused even when the key is taken.
        IdempotencyConflict: the key already started a run of ``workflow`` from another
            request (another trigger, payload or priority); nothing is written.
        DispatchFailed: as :func:`start_run`.
    """
    runtime.check_schema()
    node = runtime.definition(workflow).trigger(trigger)
    node.contract.validate(payload)
    request = request_fingerprint(node.name, payload)
    found = _started_with(runtime, workflow, key)
    if found is None:
        try:
            run = start_run(
                runtime,
                workflow,
                payload,
                trigger=node.name,
                start_key=key,
                start_request=request,
                priority=priority,
            )
        except IntegrityError:
            # Another start with this key committed first: it holds the key.
            found = _started_with(runtime, workflow, key)
            if found is None:
                raise
        else:
            return run, True
    run, held_request = found
    # A priority given must be the run's (stored at creation, never changed); none given
    # accepts the run's, whichever it is (the workflow's default, or one a first call gave).
    if held_request != request or (priority is not None and priority != run.priority):
        raise errors.IdempotencyConflict(workflow, key, run.id, trigger=run.trigger)
    return run, False


def request_fingerprint(trigger: str, payload: object) -> str:
    """A digest of a start request, ``"sha256:<hex>"``: its trigger and payload as given.

    Mappings are compared whatever their key order; values that are not JSON (dates, decimals,
    UUIDs) by their JSON form, as pydantic writes them.
    """
    plain = pydantic_core.to_jsonable_python(payload, fallback=repr)
    text = json.dumps(
        {"trigger": trigger, "payload": plain},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=repr,
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _started_with(runtime: Runtime, workflow: str, key: str) -> tuple[Run, str | None] | None:
    with runtime.database.read() as connection:
        return run_reads.find_by_start_key(connection, workflow, key)


@dataclass(frozen=True, slots=True)
class CronStart:
    """What a cron activation did.

    Attributes:
        outcome: ``"started"`` a new run; ``"duplicate"``: the window already had a run, which
            is returned (``return_existing_run``); ``"skipped"``: likewise, for a trigger that
            asks for duplicates to be skipped (``skip_duplicate``).
        run: The run started, or the one that already held the window.
    """

    outcome: Literal["started", "duplicate", "skipped"]
    run: Run


def start_cron_trigger(
    runtime: Runtime,
    workflow: str,
    trigger: str,
    signal: Mapping[str, Any] | None = None,
    *,
    delivery: Delivery | None = None,
    trace: Mapping[str, Any] | None = None,
) -> CronStart:
    """Start a run through cron trigger ``trigger``, with its schedule identity.

    The payload comes from the trigger's defaults alone. ``signal`` may carry ``signal_id``
    and ``intended_window`` (``{"start_at", "end_at"}``, ISO-8601 with offsets); a missing
    ``signal_id`` is derived from a complete window (a window with one bound is kept, but names
    nothing). Both go to the run's reserved ``context["schedule"]`` with ``received_at``. A
    trigger declared with ``idempotency`` starts at most one run per identity: a repeated
    activation returns the run that holds it.

    Raises:
        InvalidWorkflow, InvalidTrigger: no such workflow or trigger.
        InvalidSchedule: a malformed signal id or window; nothing is started.
        MissingScheduleIdempotencyKey: an idempotent trigger activated with neither a
            ``signal_id`` nor a complete window (it says which is missing); nothing is started.
        InvalidPayload, DispatchFailed: as :func:`start_run`.
    """
    definition = runtime.definition(workflow)
    node = definition.trigger(trigger)
    if node.kind != "cron":
        raise errors.InvalidTrigger(
            workflow,
            trigger,
            tuple(t.name for t in definition.triggers.values() if t.kind == "cron"),
        )
    parsed = schedules.parse_signal(workflow, trigger, signal)
    key = parsed.signal_id if node.idempotency is not None else None
    if node.idempotency is not None and key is None:
        raise errors.MissingScheduleIdempotencyKey(
            workflow, trigger, node.idempotency, parsed.missing_identity()
        )
    context = {
        SCHEDULE_KEY: schedules.schedule_context(workflow, node, parsed, runtime.clock.now())
    }
    if key is not None:
        existing = _holder(runtime, workflow, trigger, key)
        if existing is not None:
            return _duplicate(runtime, node.idempotency, existing, delivery)
    try:
        run = start_run(
            runtime,
            workflow,
            {},
            trigger=trigger,
            context=context,
            idempotency_key=key,
            delivery=delivery,
            links=telemetry.link_to((trace or {}).get("send")),
        )
    except IntegrityError:
        # Another activation of the same window committed first: it holds the window.
        existing = _holder(runtime, workflow, trigger, key) if key is not None else None
        if existing is None:
            raise
        return _duplicate(runtime, node.idempotency, existing, delivery)
    return CronStart("started", run)


def _holder(runtime: Runtime, workflow: str, trigger: str, key: str) -> Run | None:
    with runtime.database.read() as connection:
        return run_reads.find_by_idempotency_key(connection, workflow, trigger, key)


def _duplicate(
    runtime: Runtime, idempotency: str | None, run: Run, delivery: Delivery | None
) -> CronStart:
    if delivery is not None:
        with runtime.transaction() as tx:
            delivery.settle_in(tx)
    return CronStart("skipped" if idempotency == "skip_duplicate" else "duplicate", run)


def perform(
    runtime: Runtime, payload: Mapping[str, Any], *, delivery: Delivery | None = None
) -> str:
    """Execute one delivered executor payload; return what the delivery did.

    ``delivery`` is how a queue that owns the job takes part (see
    :class:`~squidmesh_sdk.port.delivery.Delivery`); step deliveries settle it in the
    transaction that records their outcome.

    Step deliveries return ``"executed"``, ``"reconciled"``, ``"skipped"``, ``"cancelled"`` or
    ``"paused"``; cron deliveries ``"started"``, ``"duplicate"`` or ``"skipped"``; compensation
    deliveries ``"compensated"`` (or ``"skipped"`` for a run that is not failed, or whose
    callback another delivery is running).

    Raises:
        InvalidExecutorPayload: not a payload an executor produced.
        InvalidRunId, RunNotFound, InvalidWorkflow: the job names a run or workflow that is not
            there (for example a run deleted after its job was queued).
    """
    job = payloads.parse(payload)
    if isinstance(job, payloads.StepJob):
        return execution.execute_step(
            runtime, job.run_id, job.step, delivery=delivery, trace=job.trace
        )
    if isinstance(job, payloads.CronJob):
        started = start_cron_trigger(
            runtime, job.workflow, job.trigger, job.signal, delivery=delivery, trace=job.trace
        )
        return started.outcome
    return compensation.compensate(runtime, job.run_id, delivery=delivery, trace=job.trace)
