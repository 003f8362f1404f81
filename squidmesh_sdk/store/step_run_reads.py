"""Reads of the step-run store: a run's step runs, their progress, their completed outputs.

What moving a run on reads (:func:`progress_states`, :func:`get_step_run`), what inspection
shows (:func:`list_step_runs` with attempts) and what a saga undoes
(:func:`completed_step_runs_for_compensation`). The writes are
:mod:`squidmesh_sdk.store.step_runs`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk.graph import StepKey
from squidmesh_sdk.store.ids import as_uuid
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import Attempt, StepRun, StepRunStatus
from squidmesh_sdk.store.schema import attempts, step_runs

__all__ = [
    "WAITING_KINDS",
    "ProgressState",
    "completed_outputs",
    "completed_step_runs_for_compensation",
    "completed_steps",
    "element_runs",
    "get_step_run",
    "list_step_runs",
    "newest_iteration",
    "progress_states",
    "step_statuses",
]


WAITING_KINDS = frozenset({"wait", "pause", "approval", "map", "signal", "child"})
"""``resume["kind"]`` of a step run that is open because it waits (no body of its own is
running): for a timer, a person, or (``map``) the elements of a map step."""


@dataclass(frozen=True, slots=True)
class ProgressState:
    """What moving a run on needs to know of one step run.

    Attributes:
        key: The step run's key (the step name, or ``name@iteration`` / ``name[item]``).
        status: Its status.
        waiting: It is open because it waits for a timer or a person, not running a body.
        routed: Settled without completing: it failed and its error (or timeout) route was
            taken, or it is an approval that was rejected.
    """

    key: str
    status: StepRunStatus
    waiting: bool
    routed: bool


def progress_states(connection: Connection, run_id: str | uuid.UUID) -> list[ProgressState]:
    """Every step run of the run, as :class:`ProgressState`, in insertion order."""
    rows = _PROGRESS_STATES.rows(connection, {"p_run_id": run_id})
    return [
        ProgressState(
            key=row["step"],
            status=row["status"],
            waiting=row["status"] == "running"
            and (row["resume"] or {}).get("kind") in WAITING_KINDS,
            routed=(row["status"] == "failed" and "failure" in (row["recovery"] or {}))
            or (row["status"] == "completed" and (row["manual"] or {}).get("event") == "rejected"),
        )
        for row in rows
    ]


def element_runs(connection: Connection, run_id: str | uuid.UUID, key: str) -> list[StepRun]:
    """The element step runs (``key[0]``, ``key[1]``...) of map step run ``key``."""
    rows = connection.execute(
        sa.select(step_runs).where(
            step_runs.c.run_id == as_uuid(run_id),
            step_runs.c.step.startswith(f"{key}[", autoescape=True),
        )
    ).mappings()
    return [StepRun.from_row(row) for row in rows]


def newest_iteration(connection: Connection, run_id: str | uuid.UUID, step: str) -> int:
    """The highest loop iteration ``step`` has a step run for in the run (0: none yet)."""
    keys = connection.scalars(
        sa.select(step_runs.c.step).where(
            step_runs.c.run_id == as_uuid(run_id),
            sa.or_(
                step_runs.c.step == step, step_runs.c.step.startswith(f"{step}@", autoescape=True)
            ),
        )
    )
    parsed = (StepKey.parse(key) for key in keys)
    return max((key.iteration for key in parsed if key.name == step), default=0)


def get_step_run(connection: Connection, run_id: str | uuid.UUID, step: str) -> StepRun | None:
    """The step run of ``step`` in the run, if there is one."""
    row = _GET_STEP_RUN.first(connection, {"p_run_id": run_id, "p_step": step})
    return StepRun.from_row(row) if row else None


def list_step_runs(
    connection: Connection, run_id: str | uuid.UUID, *, with_attempts: bool = False
) -> list[StepRun]:
    """The run's step runs, in the order they were first scheduled or started."""
    rows = list(
        connection.execute(
            sa.select(step_runs)
            .where(step_runs.c.run_id == as_uuid(run_id))
            .order_by(step_runs.c.inserted_at, step_runs.c.id)
        ).mappings()
    )
    if not with_attempts:
        return [StepRun.from_row(row) for row in rows]
    # Each step run's latest attempt is held in its own row; the earlier ones are rows of the
    # attempts table numbered below it. On PostgreSQL (READ COMMITTED) the second query may
    # see what committed after the first: a step run it did not read, or an attempt archived
    # since. Only the earlier attempts of the latest the first query read are kept, so the
    # history is the one of that moment.
    latest = {str(row["id"]): Attempt.latest_of(row) for row in rows}
    by_step_run: dict[str, list[Attempt]] = {step_run_id: [] for step_run_id in latest}
    earlier_rows = connection.execute(
        sa.select(attempts)
        .join(step_runs, step_runs.c.id == attempts.c.step_run_id)
        .where(step_runs.c.run_id == as_uuid(run_id))
        .order_by(attempts.c.step_run_id, attempts.c.attempt_number)
    ).mappings()
    for row in earlier_rows:
        step_run_id = str(row["step_run_id"])
        last = latest.get(step_run_id)
        if last is not None and row["attempt_number"] < last.number:
            by_step_run[step_run_id].append(Attempt.from_row(row))
    for step_run_id, last in latest.items():
        if last is not None:
            by_step_run[step_run_id].append(last)
    return [StepRun.from_row(row, tuple(by_step_run[str(row["id"])])) for row in rows]


def completed_steps(connection: Connection, run_id: str | uuid.UUID) -> list[str]:
    """Names of the run's completed steps, in completion order."""
    return [step_run.step for step_run in _completed(connection, run_id)]


def completed_outputs(connection: Connection, run_id: str | uuid.UUID) -> list[Mapping[str, Any]]:
    """Outputs of the run's completed steps, in completion order."""
    return [step_run.output or {} for step_run in _completed(connection, run_id)]


def completed_step_runs_for_compensation(
    connection: Connection, run_id: str | uuid.UUID
) -> list[StepRun]:
    """Completed step runs, most recently completed first: the order a saga undoes them in."""
    return _completed(connection, run_id, newest_first=True)


def step_statuses(connection: Connection, run_id: str | uuid.UUID) -> dict[str, StepRunStatus]:
    """Step name to the status of its step run, for the steps that have one."""
    rows = _STEP_STATUSES.rows(connection, {"p_run_id": run_id})
    return {row["step"]: row["status"] for row in rows}


def _completed(
    connection: Connection, run_id: str | uuid.UUID, *, newest_first: bool = False
) -> list[StepRun]:
    """Completed step runs in completion order.

    Ordered by when their completed attempt finished, not by ``updated_at``: writing
    compensation results touches ``updated_at`` and must not reorder a redelivered rollback.
    The latest attempt (in the step run's row) is the last to finish; earlier ones that
    completed (a step run completed, then run again) are rows of the attempts table.
    """
    finished = (
        sa.select(attempts.c.step_run_id, sa.func.max(attempts.c.updated_at).label("completed_at"))
        .where(attempts.c.status == "completed")
        .group_by(attempts.c.step_run_id)
        .subquery()
    )
    completed_at = sa.case(
        (step_runs.c.attempt_status == "completed", step_runs.c.attempt_updated_at),
        else_=finished.c.completed_at,
    )
    keys = [
        sa.func.coalesce(completed_at, step_runs.c.updated_at),
        step_runs.c.inserted_at,
        step_runs.c.id,
    ]
    rows = connection.execute(
        sa.select(step_runs)
        .outerjoin(finished, finished.c.step_run_id == step_runs.c.id)
        .where(step_runs.c.run_id == as_uuid(run_id), step_runs.c.status == "completed")
        .order_by(*(key.desc() for key in keys) if newest_first else keys)
    ).mappings()
    return [StepRun.from_row(row) for row in rows]


_GET_STEP_RUN = Prepared(
    lambda _: sa.select(step_runs).where(
        step_runs.c.run_id == sa.bindparam("p_run_id"), step_runs.c.step == sa.bindparam("p_step")
    )
)


def _when_status(status: str, column: sa.Column[Any]) -> sa.Label[Any]:
    """``column`` of the rows with ``status``, NULL for the others (same name and type)."""
    return sa.case((step_runs.c.status == status, column), else_=sa.null()).label(column.key)


_PROGRESS_STATES = Prepared(
    lambda _: (
        sa.select(
            step_runs.c.step,
            step_runs.c.status,
            # Only the statuses whose progress they decide need their JSON: a settle reads
            # every step run of the run, and would decode three JSON columns of each.
            _when_status("running", step_runs.c.resume),
            _when_status("failed", step_runs.c.recovery),
            _when_status("completed", step_runs.c.manual),
        )
        .where(step_runs.c.run_id == sa.bindparam("p_run_id"))
        .order_by(step_runs.c.inserted_at, step_runs.c.id)
    )
)


_STEP_STATUSES = Prepared(
    lambda _: sa.select(step_runs.c.step, step_runs.c.status).where(
        step_runs.c.run_id == sa.bindparam("p_run_id")
    )
)
