"""Starting step runs: a step run begins ``running``, with its next attempt.

What a claim does once it found a step startable: a missing step run is inserted, a
scheduled (``pending``) or retried (``failed``) one is claimed, and either way the step run's
next attempt begins in the same statement (a step run's latest attempt is held in its own
row: see :mod:`squidmesh_sdk.store.attempts`). A step run already ``running`` or
``completed`` is left alone, so of any number of concurrent claims exactly one starts the
step. Scheduling and finishing step runs is :mod:`squidmesh_sdk.store.step_runs`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

import sqlalchemy as sa

from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store.database import Transaction, upsert
from squidmesh_sdk.store.ids import new_id_text
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import Attempt, StepRun
from squidmesh_sdk.store.schema import step_runs
from squidmesh_sdk.store.step_run_reads import get_step_run
from squidmesh_sdk.store.step_runs import new_row_values
from squidmesh_sdk.store.types import UTCDateTime

__all__ = ["begin_step", "begin_step_with_attempt", "start_scheduled"]


def begin_step(
    tx: Transaction,
    run_id: str | uuid.UUID,
    step: str,
    input: Mapping[str, Any],
    recovery: Mapping[str, Any] | None = None,
) -> tuple[StepRun, Literal["execute", "skip"]]:
    """Claim ``step`` for execution.

    A missing row is inserted ``running``; a ``pending`` row is claimed keeping its input
    snapshot; a ``failed`` row (a retry) is claimed with the new input and recovery. A row that
    is ``running`` or ``completed`` is returned with ``"skip"``. Of any number of concurrent
    callers exactly one gets ``"execute"``.
    """
    rows = _BEGIN_STEP.rows(
        tx.connection,
        {
            "p_id": new_id_text(),
            "p_run_id": run_id,  # prepared statements take ids as text too
            "p_step": step,
            "p_input": dict(input),
            "p_recovery": dict(recovery) if recovery is not None else None,
            "p_now": tx.now,
        },
    )
    if rows:
        return StepRun.from_row(rows[0]), "execute"
    existing = get_step_run(tx.connection, run_id, step)
    assert existing is not None  # noqa: S101 - the conflict proves the row exists
    return existing, "skip"


def begin_step_with_attempt(
    tx: Transaction,
    run_id: str | uuid.UUID,
    step: str,
    input: Mapping[str, Any],
    recovery: Mapping[str, Any] | None,
    step_run_id: str | uuid.UUID,
) -> tuple[StepRun, Literal["execute", "skip"], Attempt | None]:
    """:func:`begin_step`, and the step run's next attempt, when it begins.

    A step run inserted gets the id ``step_run_id`` and attempt 1; a scheduled (``pending``)
    or ``failed`` one that is claimed keeps its id and gets its next attempt (callers hold the
    run's lock, as for :func:`~squidmesh_sdk.store.attempts.begin_attempt`). One that is
    ``running`` or ``completed`` is returned with ``"skip"`` and no attempt. The attempt is
    the step run's latest, in its own row: one statement, unless a claimed row's previous
    attempt must be archived first (a retry).
    """
    params = {
        "p_id": step_run_id,
        "p_run_id": run_id,  # prepared statements take ids as text too
        "p_step": step,
        "p_input": dict(input),
        "p_recovery": dict(recovery) if recovery is not None else None,
        "p_attempt_id": new_id_text(),
        "p_now": tx.now,
    }
    rows = _BEGIN_STEP_WITH_ATTEMPT.rows(tx.connection, params)
    if not rows:
        rows, existing = _claim_archiving(tx, _BEGIN_STEP_WITH_ATTEMPT, params, run_id, step)
        if not rows:
            assert existing is not None  # noqa: S101 - the conflict proves the row exists
            return existing, "skip", None
    step_run, attempt = _begun(rows, params)
    return step_run, "execute", attempt


def start_scheduled(
    tx: Transaction,
    run_id: str | uuid.UUID,
    step: str,
    recovery: Mapping[str, Any] | None,
) -> tuple[StepRun, Attempt] | None:
    """Claim ``step``'s ``pending`` or ``failed`` step run, keeping its input; its next attempt.

    What :func:`begin_step_with_attempt` does to such a row, for a caller that runs only steps
    already scheduled (a graph with several paths, a map's elements): it needs no read of the
    row first. ``None`` when there is no such row (none, or one running or completed), and
    nothing was written. One statement, unless the row's previous attempt must be archived
    first (a retry).
    """
    params = {
        "p_run_id": run_id,
        "p_step": step,
        "p_recovery": dict(recovery) if recovery is not None else None,
        "p_attempt_id": new_id_text(),
        "p_now": tx.now,
    }
    rows = _START_SCHEDULED.rows(tx.connection, params)
    if not rows:
        rows, _ = _claim_archiving(tx, _START_SCHEDULED, params, run_id, step)
    return _begun(rows, params) if rows else None


def _claim_archiving(
    tx: Transaction,
    statement: Prepared,
    params: Mapping[str, Any],
    run_id: str | uuid.UUID,
    step: str,
) -> tuple[list[dict[str, Any]], StepRun | None]:
    """A begin ``statement`` that claimed nothing, run again if that was for an attempt.

    The statement claims only a row that holds no attempt: one that is claimable but still
    holds its previous attempt (a retry, a takeover) has it archived, then the statement
    runs again; its rows. A row that is not claimable (or none) is left alone: no rows, and
    the row.
    """
    existing = get_step_run(tx.connection, run_id, step)
    if existing is None or existing.status not in _CLAIMABLE_STATUSES:
        return [], existing
    attempt_store.archive_latest(tx, existing.id)
    return statement.rows(tx.connection, params), None


def _begun(rows: list[dict[str, Any]], params: Mapping[str, Any]) -> tuple[StepRun, Attempt]:
    """The step run a begin statement returned, and the attempt it began with ``params``.

    The statement returns the attempt's number only: the rest is what ``params`` set.
    """
    assert rows  # noqa: S101 - the row is claimable, and has no attempt to archive now
    row = rows[0]
    step_run = StepRun.from_row(row)
    attempt = Attempt(
        id=params["p_attempt_id"],
        step_run_id=step_run.id,
        number=row["attempt_number"],
        status="running",
        error=None,
        inserted_at=params["p_now"],
        updated_at=params["p_now"],
    )
    return step_run, attempt


def _claimed_values(input: Any, recovery: Any, now: Any) -> dict[str, Any]:
    """A ``pending`` or ``failed`` step run claimed: ``input``, ``recovery`` and ``now`` given.

    A scheduled (``pending``) row keeps its input snapshot and its recovery, if it has one; a
    retried (``failed``) row takes the ones given.
    """
    pending = step_runs.c.status == "pending"
    return {
        "status": "running",
        "input": sa.case((pending, step_runs.c.input), else_=input),
        "recovery": sa.case(
            (pending, sa.func.coalesce(step_runs.c.recovery, recovery)), else_=recovery
        ),
        "output": sa.null(),
        "last_error": sa.null(),
        "resume": sa.null(),
        "manual": sa.null(),
        "updated_at": now,
    }


_CLAIMABLE_STATUSES = ("pending", "failed")
_CLAIMABLE = sa.or_(*(step_runs.c.status == status for status in _CLAIMABLE_STATUSES))
_NO_ATTEMPT_HELD = step_runs.c.attempt_id.is_(None)
"""A claimed row's latest attempt must have been archived: its columns are the new one's."""
_BEGUN_COLUMNS = tuple(
    column
    for column in step_runs.c
    if not column.key.startswith("attempt_") or column.key == "attempt_number"
)
"""What a begin statement returns: the step run, and of its attempt only the number (the
rest is what the statement set; not converting it back saves a step's Python)."""


def _begin_step_statement(dialect: str) -> Any:
    insert = upsert(dialect, step_runs).values(new_row_values(status="running"))
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[step_runs.c.run_id, step_runs.c.step],
        set_=_claimed_values(excluded.input, excluded.recovery, excluded.updated_at),
        where=_CLAIMABLE,
    ).returning(*step_runs.c)


def _begin_step_with_attempt_statement(dialect: str) -> Any:
    now = sa.bindparam("p_now", type_=UTCDateTime)
    first = attempt_store.running_attempt_values(
        sa.bindparam("p_attempt_id", type_=sa.Uuid), 1, now
    )
    insert = upsert(dialect, step_runs).values({**new_row_values(status="running"), **first})
    excluded = insert.excluded
    claimed = attempt_store.running_attempt_values(
        excluded.attempt_id, step_runs.c.attempt_number + 1, excluded.updated_at
    )
    return insert.on_conflict_do_update(
        index_elements=[step_runs.c.run_id, step_runs.c.step],
        set_={
            **_claimed_values(excluded.input, excluded.recovery, excluded.updated_at),
            **claimed,
        },
        where=sa.and_(_CLAIMABLE, _NO_ATTEMPT_HELD),
    ).returning(*_BEGUN_COLUMNS)


def _start_scheduled_statement(_dialect: str) -> Any:
    now = sa.bindparam("p_now", type_=UTCDateTime)
    return (
        step_runs.update()
        .where(
            step_runs.c.run_id == sa.bindparam("p_run_id"),
            step_runs.c.step == sa.bindparam("p_step"),
            _CLAIMABLE,
            _NO_ATTEMPT_HELD,
        )
        .values(
            {
                **_claimed_values(
                    step_runs.c.input,
                    sa.bindparam("p_recovery", type_=step_runs.c.recovery.type),
                    now,
                ),
                **attempt_store.running_attempt_values(
                    sa.bindparam("p_attempt_id", type_=sa.Uuid),
                    step_runs.c.attempt_number + 1,
                    now,
                ),
            }
        )
        .returning(*_BEGUN_COLUMNS)
    )


_BEGIN_STEP = Prepared(_begin_step_statement)
_BEGIN_STEP_WITH_ATTEMPT = Prepared(_begin_step_with_attempt_statement)
_START_SCHEDULED = Prepared(_start_scheduled_statement)
