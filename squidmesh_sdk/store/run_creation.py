"""Creating runs: a start (:func:`create_run`) and a replay of an earlier run (:func:`replay_run`).

Both insert a ``pending`` run pinned to the definition they are given and dispatch nothing (the
caller dispatches its first work in the same transaction). Moving runs on is
:mod:`squidmesh_sdk.store.runs`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from squidmesh_sdk import errors
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.store import run_reads, step_run_reads
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.ids import new_id
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import SCHEDULE_KEY, Run, StepRun, parse_run_id
from squidmesh_sdk.store.schema import runs

__all__ = ["create_run", "replay_blockers", "replay_run"]

_SCHEDULE_IDENTITY_KEYS = ("idempotency", "idempotency_key")


def create_run(
    tx: Transaction,
    definition: WorkflowDefinition,
    payload: object,
    *,
    trigger: str | None = None,
    context: Mapping[str, Any] | None = None,
    replayed_from_run_id: str | None = None,
    idempotency_key: str | None = None,
    start_key: str | None = None,
    start_request: str | None = None,
    trace_context: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    parent_step: str | None = None,
    priority: int | None = None,
) -> Run:
    """Validate ``payload`` against the trigger's contract and insert a ``pending`` run.

    ``trigger`` defaults to the workflow's first declared trigger. Nothing is dispatched.
    ``idempotency_key`` is a cron activation's schedule identity (one run per workflow,
    trigger and key); ``start_key`` the key a caller started the run with (one run per workflow
    and key), ``start_request`` the fingerprint of that request. ``priority`` overrides the
    workflow's (checked by the caller).

    Raises:
        InvalidTrigger: the workflow has no such trigger.
        InvalidPayload: listing every missing, unknown and invalid field; nothing is written.
        InvalidRunId, RunNotFound: ``replayed_from_run_id`` is not the id of a run.
    """
    trigger_node = definition.trigger(trigger)
    validated = trigger_node.contract.validate(payload)
    if replayed_from_run_id is not None:
        run_reads.select_run(tx.connection, replayed_from_run_id, for_update=False)
    values = _new_run(
        tx,
        definition,
        trigger=trigger_node.name,
        payload=validated,
        context=dict(context or {}),
        replayed_from_run_id=parse_run_id(replayed_from_run_id) if replayed_from_run_id else None,
        idempotency_key=idempotency_key,
        start_key=start_key,
        start_request=start_request,
        trace_context=trace_context,
        parent_run_id=parse_run_id(parent_run_id) if parent_run_id else None,
        parent_step=parent_step,
        priority=definition.priority if priority is None else priority,
    )
    # On PostgreSQL the insert goes with the transaction's next statement (its first job's):
    # a conflict on an idempotency or start key is raised then, or at commit, as IntegrityError.
    _INSERT_RUN.send(tx.connection, values)
    return Run.from_row(values)


def replay_blockers(
    step_runs: Iterable[StepRun], definition: WorkflowDefinition | None
) -> list[dict[str, Any]]:
    """Completed steps whose recovery policy makes a replay need explicit approval.

    Uses the policy persisted on each step run, falling back to the current definition.
    """
    blockers = []
    for step_run in step_runs:
        if step_run.status != "completed":
            continue
        policy = dict(step_run.recovery or {})
        if not policy and definition is not None and step_run.step in definition.steps:
            policy = definition.step(step_run.step).recovery.to_dict()
        if policy.get("irreversible"):
            policy["compensatable"] = False
        if policy.get("irreversible") or policy.get("compensatable") is False:
            blockers.append(
                {
                    "step": step_run.step,
                    "irreversible": bool(policy.get("irreversible")),
                    "compensatable": False,
                    "replay": "manual_review_required",
                    "recovery": "manual_intervention",
                }
            )
    return blockers


def replay_run(
    tx: Transaction,
    definition: WorkflowDefinition,
    run_id: object,
    *,
    allow_irreversible: bool = False,
    trace_context: Mapping[str, Any] | None = None,
) -> Run:
    """Insert a new ``pending`` run with the source's payload and trigger, linked to it.

    Schedule metadata is carried over without its idempotency key; all other context starts
    empty. Nothing is dispatched.

    Raises:
        InvalidRunId, RunNotFound: as :func:`get_run`.
        UnsafeReplay: completed irreversible or non-compensatable steps, unless
            ``allow_irreversible`` is ``True``.
    """
    source = run_reads.get_run(tx.connection, run_id)
    if allow_irreversible is not True:
        blockers = replay_blockers(
            step_run_reads.list_step_runs(tx.connection, source.id), definition
        )
        if blockers:
            raise errors.UnsafeReplay(source.id, blockers)
    context: dict[str, Any] = {}
    if source.schedule is not None:
        context[SCHEDULE_KEY] = {
            key: value
            for key, value in source.schedule.items()
            if key not in _SCHEDULE_IDENTITY_KEYS
        }
    values = _new_run(
        tx,
        definition,
        trigger=source.trigger,
        payload=dict(source.payload),
        context=context,
        replayed_from_run_id=uuid.UUID(source.id),
        trace_context=trace_context,
        priority=source.priority,
    )
    _INSERT_RUN.execute(tx.connection, values)
    return Run.from_row(values)


def _new_run(
    tx: Transaction,
    definition: WorkflowDefinition,
    *,
    trigger: str,
    payload: Mapping[str, Any],
    context: dict[str, Any],
    replayed_from_run_id: uuid.UUID | None,
    trace_context: Mapping[str, Any] | None,
    priority: int,
    idempotency_key: str | None = None,
    start_key: str | None = None,
    start_request: str | None = None,
    parent_run_id: uuid.UUID | None = None,
    parent_step: str | None = None,
) -> dict[str, Any]:
    """A new ``pending`` run's row, pinned to ``definition``, at its first step."""
    return {
        "id": new_id(),
        "workflow": definition.name,
        "trigger": trigger,
        "status": "pending",
        "payload": payload,
        "context": context,
        "current_step": definition.initial_step,
        "last_error": None,
        "replayed_from_run_id": replayed_from_run_id,
        "definition_fingerprint": definition.fingerprint,
        "definition_version": definition.version,
        "idempotency_key": idempotency_key,
        "start_key": start_key,
        "start_request": start_request,
        "trace_context": dict(trace_context) if trace_context is not None else None,
        "parent_run_id": parent_run_id,
        "parent_step": parent_step,
        "operator_retries": None,
        "priority": priority,
        "inserted_at": tx.now,
        "updated_at": tx.now,
    }


_INSERT_RUN = Prepared(
    lambda _: runs.insert().values({column.key: sa.bindparam(column.key) for column in runs.c})
)
