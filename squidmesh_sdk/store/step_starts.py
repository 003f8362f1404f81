"""Starting step runs: a step run begins ``running``, with its next attempt.

What a claim does once it found a step startable: a missing step run is inserted, a
scheduled (``pending``) or retried (``failed``) one is claimed, and either way the step run's
next attempt is inserted with it (one statement on PostgreSQL). A step run already
``running`` or ``completed`` is left alone, so of any number of concurrent claims exactly one
starts the step. Scheduling and finishing step runs is :mod:`squidmesh_sdk.store.step_runs`.
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
from squidmesh_sdk.store.schema import attempts, step_runs
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
    ``running`` or ``completed`` is returned with ``"skip"`` and no attempt. On PostgreSQL
    both writes are one statement (the attempt's insert reads the step run's from a
    ``WITH``); on SQLite, two.
    """
    params = {
        "p_id": step_run_id,
        "p_run_id": run_id,  # prepared statements take ids as text too
        "p_step": step,
        "p_input": dict(input),
        "p_recovery": dict(recovery) if recovery is not None else None,
        "p_now": tx.now,
    }
    if tx.connection.dialect.name != "postgresql":
        rows = _BEGIN_STEP.rows(tx.connection, params)
        if rows:
            step_run = StepRun.from_row(rows[0])
            return step_run, "execute", attempt_store.begin_attempt(tx, step_run.id)
    else:
        rows = _BEGIN_STEP_WITH_ATTEMPT.rows(
            tx.connection, {**params, "p_attempt_id": new_id_text()}
        )
        if rows:
            row = rows[0]
            attempt = Attempt.from_row({key: row[f"a_{key}"] for key in _ATTEMPT_KEYS})
            return StepRun.from_row(row), "execute", attempt
    existing = get_step_run(tx.connection, run_id, step)
    assert existing is not None  # noqa: S101 - the conflict proves the row exists
    return existing, "skip", None


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
    nothing was written. On PostgreSQL one statement; on SQLite, two.
    """
    params = {
        "p_run_id": run_id,
        "p_step": step,
        "p_recovery": dict(recovery) if recovery is not None else None,
        "p_now": tx.now,
    }
    if tx.connection.dialect.name != "postgresql":
        rows = _START_SCHEDULED.rows(tx.connection, params)
        if not rows:
            return None
        step_run = StepRun.from_row(rows[0])
        return step_run, attempt_store.begin_attempt(tx, step_run.id)
    rows = _START_SCHEDULED_WITH_ATTEMPT.rows(
        tx.connection, {**params, "p_attempt_id": new_id_text()}
    )
    if not rows:
        return None
    row = rows[0]
    attempt = Attempt.from_row({key: row[f"a_{key}"] for key in _ATTEMPT_KEYS})
    return StepRun.from_row(row), attempt


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


_CLAIMABLE = sa.or_(step_runs.c.status == "pending", step_runs.c.status == "failed")


def _begin_step_statement(dialect: str) -> Any:
    insert = upsert(dialect, step_runs).values(new_row_values(status="running"))
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[step_runs.c.run_id, step_runs.c.step],
        set_=_claimed_values(excluded.input, excluded.recovery, excluded.updated_at),
        where=_CLAIMABLE,
    ).returning(*step_runs.c)


def _start_scheduled_statement(_dialect: str) -> Any:
    return (
        step_runs.update()
        .where(
            step_runs.c.run_id == sa.bindparam("p_run_id"),
            step_runs.c.step == sa.bindparam("p_step"),
            _CLAIMABLE,
        )
        .values(
            _claimed_values(
                step_runs.c.input,
                sa.bindparam("p_recovery", type_=step_runs.c.recovery.type),
                sa.bindparam("p_now", type_=UTCDateTime),
            )
        )
        .returning(*step_runs.c)
    )


_BEGIN_STEP = Prepared(_begin_step_statement)
_START_SCHEDULED = Prepared(_start_scheduled_statement)
_ATTEMPT_KEYS = tuple(column.key for column in attempts.c)


def _with_next_attempt(claim: Any) -> Any:
    # PostgreSQL: one statement. The attempt's INSERT reads the step run's RETURNING row, so it
    # exists only if the step run began (inserted, or a pending or failed row claimed).
    begun = claim.cte("begun")
    attempt = attempt_store.next_attempt(
        sa.bindparam("p_attempt_id", type_=sa.Uuid), begun.c.id
    ).cte("attempt")
    return sa.select(
        *begun.c, *(attempt.c[key].label(f"a_{key}") for key in _ATTEMPT_KEYS)
    ).select_from(begun.join(attempt, sa.true()))


_BEGIN_STEP_WITH_ATTEMPT = Prepared(
    lambda dialect: _with_next_attempt(_begin_step_statement(dialect))
)
_START_SCHEDULED_WITH_ATTEMPT = Prepared(
    lambda dialect: _with_next_attempt(_start_scheduled_statement(dialect))
)
