"""Reading and listing runs: one run (with its history), pages of runs, a run's children.

The writes (creating, locking, moving runs through the state machine) are
:mod:`squidmesh_sdk.store.runs`.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk import errors, state_machine
from squidmesh_sdk.store import audit, step_run_reads
from squidmesh_sdk.store import signals as signal_store
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import ChildRun, Run, parse_run_id
from squidmesh_sdk.store.schema import runs
from squidmesh_sdk.store.types import UTCDateTime

__all__ = [
    "find_by_idempotency_key",
    "find_by_start_key",
    "find_run",
    "get_run",
    "list_children",
    "list_runs",
    "lock_run_unless_locked",
    "running_steps",
    "select_run",
]


MAX_LIMIT = 2**31 - 1
"""The most runs one page may ask for (a larger number does not fit SQLite's integers)."""


def get_run(connection: Connection, run_id: object, *, include_history: bool = False) -> Run:
    """Read one run; with ``include_history`` also its step runs, attempts and audit events.

    Raises:
        InvalidRunId: ``run_id`` is not a UUID.
        RunNotFound: no such run.
    """
    run = select_run(connection, run_id, for_update=False)
    if not include_history:
        return run
    return _with_history(connection, run)


def find_by_idempotency_key(
    connection: Connection, workflow: str, trigger: str, key: str
) -> Run | None:
    """The run of ``workflow`` started through ``trigger`` with schedule identity ``key``."""
    row = (
        connection.execute(
            sa.select(runs).where(
                runs.c.workflow == workflow,
                runs.c.trigger == trigger,
                runs.c.idempotency_key == key,
            )
        )
        .mappings()
        .first()
    )
    return Run.from_row(row) if row is not None else None


def find_by_start_key(
    connection: Connection, workflow: str, key: str
) -> tuple[Run, str | None] | None:
    """The run of ``workflow`` started with idempotency key ``key``, and its request fingerprint."""
    row = _SELECT_BY_START_KEY.first(connection, {"workflow": workflow, "key": key})
    return (Run.from_row(row), row["start_request"]) if row is not None else None


def list_runs(
    connection: Connection,
    *,
    workflow: str | None = None,
    status: str | None = None,
    limit: int = 50,
    after: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Run]:
    """Runs, newest first, optionally only of one workflow and / or in one status.

    Pages through large tables with a cursor: pass the id of the last run of a page as
    ``after`` to get the next page (runs listed after it, that is older ones). ``since`` and
    ``until`` keep the runs created (``inserted_at``) at or after ``since`` and before
    ``until``; each is an aware datetime.

    Raises:
        InvalidArgument: an unknown status, a limit that is not a positive integer, or a
            ``since`` / ``until`` that is not an aware datetime.
        InvalidRunId, RunNotFound: ``after`` is not the id of a run.
    """
    if status is not None and status not in state_machine.STATES:
        expected = ", ".join(state_machine.STATES)
        raise errors.InvalidArgument(
            "status", f"unknown run status {status!r}; expected one of {expected}"
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidArgument(
            "limit", f"limit must be an integer from 1 to {MAX_LIMIT:,}, got {limit!r}"
        )
    if workflow is not None and not isinstance(workflow, str):
        raise errors.InvalidArgument("workflow", f"workflow must be a name, got {workflow!r}")
    query = sa.select(runs).order_by(runs.c.inserted_at.desc(), runs.c.id.desc()).limit(limit)
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and (not isinstance(bound, datetime) or bound.tzinfo is None):
            raise errors.InvalidArgument(name, f"{name} must be an aware datetime, got {bound!r}")
    if workflow is not None:
        query = query.where(runs.c.workflow == workflow)
    if status is not None:
        query = query.where(runs.c.status == status)
    if since is not None:
        query = query.where(runs.c.inserted_at >= since)
    if until is not None:
        query = query.where(runs.c.inserted_at < until)
    if after is not None:
        cursor = select_run(connection, after, for_update=False)
        position = sa.tuple_(
            sa.literal(cursor.inserted_at, UTCDateTime()), sa.literal(uuid.UUID(cursor.id))
        )
        query = query.where(sa.tuple_(runs.c.inserted_at, runs.c.id) < position)
    return [Run.from_row(row) for row in connection.execute(query).mappings()]


def running_steps(connection: Connection, run_id: str) -> list[str]:
    """The run's step runs with a body in flight: ``running`` and not waiting."""
    states = step_run_reads.progress_states(connection, run_id)
    return [state.key for state in states if state.status == "running" and not state.waiting]


def list_children(connection: Connection, run_id: str) -> list[ChildRun]:
    """The runs ``child`` steps of run ``run_id`` started, oldest first."""
    rows = connection.execute(
        sa.select(runs.c.id, runs.c.workflow, runs.c.status, runs.c.parent_step)
        .where(runs.c.parent_run_id == parse_run_id(run_id))
        .order_by(runs.c.inserted_at, runs.c.id)
    ).mappings()
    return [
        ChildRun(
            child_run_id=str(row["id"]),
            workflow=row["workflow"],
            status=row["status"],
            parent_step=row["parent_step"],
        )
        for row in rows
    ]


def _with_history(connection: Connection, run: Run) -> Run:
    step_runs = tuple(step_run_reads.list_step_runs(connection, run.id, with_attempts=True))
    events = tuple(audit.list_events(connection, run.id))
    return dataclasses.replace(
        run,
        step_runs=step_runs,
        events=events,
        signals=tuple(signal_store.list_signals(connection, run.id)),
        children=tuple(list_children(connection, run.id)),
    )


def select_run(connection: Connection, run_id: object, *, for_update: bool) -> Run:
    """Read one run (without history); ``for_update`` locks it for the rest of the transaction.

    Raises:
        InvalidRunId: ``run_id`` is not a UUID.
        RunNotFound: no such run.
    """
    run = find_run(connection, run_id, for_update=for_update)
    if run is None:
        raise errors.RunNotFound(str(parse_run_id(run_id)))
    return run


def find_run(connection: Connection, run_id: object, *, for_update: bool = False) -> Run | None:
    """:func:`select_run`, but ``None`` for a run that does not exist.

    For a run another one only names (a parent, a child): a purge, or the host, may have
    deleted it since.

    Raises:
        InvalidRunId: ``run_id`` is not a UUID.
    """
    row = (_LOCK_RUN if for_update else _SELECT_RUN).first(
        connection, {"run_id": parse_run_id(run_id)}
    )
    return Run.from_row(row) if row is not None else None


def lock_run_unless_locked(connection: Connection, run_id: object) -> Run | None:
    """Read the run and lock it, as :func:`select_run` does, unless another transaction holds it.

    ``None`` then (or when there is no such run), at once: for a transaction that holds
    another run's lock already, which must never wait for a second one (two such
    transactions could wait for each other). SQLite's write transactions are exclusive: the
    run is never held by another.

    Raises:
        InvalidRunId: ``run_id`` is not a UUID.
    """
    row = _LOCK_RUN_UNLESS_LOCKED.first(connection, {"run_id": parse_run_id(run_id)})
    return Run.from_row(row) if row is not None else None


_SELECT_RUN = Prepared(lambda _: sa.select(runs).where(runs.c.id == sa.bindparam("run_id")))


# FOR NO KEY UPDATE: exclusive between run locks, but not against the key-share locks that
# inserting a row referencing the run takes (a child's job for its parent, a step run).
_LOCK_RUN = Prepared(
    lambda _: (
        sa.select(runs).where(runs.c.id == sa.bindparam("run_id")).with_for_update(key_share=True)
    )
)


_LOCK_RUN_UNLESS_LOCKED = Prepared(
    lambda _: (
        sa.select(runs)
        .where(runs.c.id == sa.bindparam("run_id"))
        .with_for_update(key_share=True, skip_locked=True)
    )
)


_SELECT_BY_START_KEY = Prepared(
    lambda _: sa.select(runs).where(
        runs.c.workflow == sa.bindparam("workflow"), runs.c.start_key == sa.bindparam("key")
    )
)
