"""The run store: locking runs and moving them through the state machine.

Functions that change a run take a :class:`~squidmesh_sdk.store.database.Transaction` and
expect the caller to commit; none of them dispatches work (that is the dispatcher's job, in the
same transaction). Creating runs (a start, a replay) is :mod:`squidmesh_sdk.store.run_creation`,
reading and listing them :mod:`squidmesh_sdk.store.run_reads`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from squidmesh_sdk import error_records, errors, state_machine
from squidmesh_sdk.frozen import evolve
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import prepared, run_reads, step_run_reads
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import (
    Attempt,
    Run,
    RunStatus,
    parse_run_id,
)
from squidmesh_sdk.store.schema import runs, step_runs
from squidmesh_sdk.store.types import UTCDateTime

__all__ = [
    "ABANDONED_CANCELLATION_ERROR",
    "PAUSE_CANCELLATION_ERROR",
    "RUN_CHANNEL",
    "UNSET",
    "WAIT_CANCELLATION_ERROR",
    "WATCHER_APPLICATION_NAME",
    "cancel_run",
    "lock_run",
    "relock_run",
    "relock_run_later",
    "schedule_next_step",
    "transition_run",
    "update_run",
    "write_run",
]

PAUSE_CANCELLATION_ERROR: Mapping[str, Any] = error_records.error_record(
    "cancelled", "run cancelled while paused", code="cancelled"
)
"""The error recorded on a paused step and its attempt when the run is cancelled."""

WAIT_CANCELLATION_ERROR: Mapping[str, Any] = error_records.error_record(
    "cancelled", "run cancelled while the step waited", code="cancelled"
)
"""The error recorded on a waiting step (a timer, or a pause beside running branches) and its
attempt when the run is cancelled."""

ABANDONED_CANCELLATION_ERROR: Mapping[str, Any] = error_records.error_record(
    "cancelled",
    "run cancelled while its step was running; the step's worker stopped",
    code="cancelled",
)
"""The error recorded on a cancelled run's step run whose worker died while running it.

Its attempt is recorded as ``abandoned``, with the reason the worker was found gone.
"""

RUN_CHANNEL = "squidmesh_runs"
"""The PostgreSQL channel a run's id is sent on (``NOTIFY``) when it finishes.

Sent by :func:`write_run` in the transaction that makes the run completed, failed or cancelled,
so it is delivered when that commits (never for a rollback). ``wait_for_run`` listens on it.
"""

WATCHER_APPLICATION_NAME = "squidmesh_run_watcher"
"""The ``application_name`` of the connections that listen on :data:`RUN_CHANNEL`.

A run's end is sent only while one is connected to the database: PostgreSQL serialises the
commits of transactions that notify (it holds a lock from the notification until after the
commit), which halves the commits per second of busy workers if each one notified. Checking
``pg_stat_activity`` for a listener costs a read of shared memory, in the same round trip.
"""


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET
"""Marks a run field a write leaves unchanged (``None`` is a value: it clears the field)."""


def lock_run(connection: Connection, run_id: object) -> Run:
    """Read the run and lock its row until the transaction ends.

    ``FOR NO KEY UPDATE`` on PostgreSQL; SQLite's write transactions are already exclusive.

    Raises:
        InvalidRunId: ``run_id`` is not a UUID.
        RunNotFound: no such run.
    """
    return run_reads.select_run(connection, run_id, for_update=True)


def relock_run(connection: Connection, run: Run) -> Run:
    """Lock ``run`` again (read earlier, in another transaction) and refresh it.

    Only what a run can change is read again: its status, context, current step, last error
    and ``updated_at``. The rest (payload, trace context, ...) is written once, at creation.

    Raises:
        RunNotFound: the run is gone.
    """
    row = _RELOCK_RUN.first(connection, {"run_id": run.id})
    if row is None:
        raise errors.RunNotFound(run.id)
    return _refreshed(run, row)


def relock_run_later(connection: Connection, run: Run) -> Callable[[], Run]:
    """:func:`relock_run`, whose result comes from the returned function.

    On PostgreSQL statements sent after it (:meth:`~squidmesh_sdk.store.prepared.Prepared.send`)
    go to the server with it: the lock is still taken first.
    """
    fetch = _RELOCK_RUN.rows_later(connection, {"run_id": run.id})

    def relocked() -> Run:
        rows = fetch()
        if not rows:
            raise errors.RunNotFound(run.id)
        return _refreshed(run, rows[0])

    return relocked


def relock_and_complete(
    tx: Transaction, run: Run, attempt: Attempt, output: Mapping[str, Any]
) -> Run:
    """Lock ``run`` again (as :func:`relock_run`) and complete its running attempt and step run.

    The outcome of a step that succeeded, whatever the run's state: the step run completes
    with ``output``, and so does its latest attempt, ``attempt`` (held in the step run's row:
    see :mod:`squidmesh_sdk.store.attempts`), the run's lock taken first. One statement: on
    PostgreSQL the run is locked by the ``WITH`` the query reads first, and the step run's
    update runs as the query asks for its row count, after the lock; on SQLite (whose write
    transactions are exclusive) the step run's update returns the run.

    Raises:
        RunNotFound: the run is gone.
        StaleRecord: the attempt or the step run is not running (this transaction then rolls
            back: the step's result is discarded).
    """
    params = {
        "run_id": run.id,
        "p_step_run_id": attempt.step_run_id,
        "p_attempt_id": attempt.id,
        "p_output": dict(output),
        "p_now": tx.now,
    }
    if tx.connection.dialect.name != "postgresql":
        # No row: the attempt or the step run is not running, or the run is gone.
        row = _COMPLETE_STEP_READ_RUN.first(tx.connection, params)
        if row is None or row["status"] is None:
            relock_run(tx.connection, run)  # raises RunNotFound if the run is gone
        if row is None:
            _raise_stale(tx, attempt, output)
        assert row is not None  # noqa: S101 - one of the two raised otherwise
        return _refreshed(run, row)
    row = _RELOCK_AND_COMPLETE.first(tx.connection, params)
    if row is None:
        raise errors.RunNotFound(run.id)
    if not row.pop("steps_done"):
        _raise_stale(tx, attempt, output)
    return _refreshed(run, row)


def _raise_stale(tx: Transaction, attempt: Attempt, output: Mapping[str, Any]) -> NoReturn:
    """Raise the :class:`~squidmesh_sdk.errors.StaleRecord` of a completion that matched no row."""
    attempt_store.complete_attempt(tx, attempt)  # raises StaleRecord, with the status
    step_run_store.complete_step(tx, attempt.step_run_id, output)  # raises StaleRecord
    raise AssertionError("the step run and its latest attempt are both running")  # pragma: no cover


def _refreshed(run: Run, row: Mapping[str, Any]) -> Run:
    return evolve(run, **{**row, "last_error": error_records.upgrade(row["last_error"])})


def write_run(
    tx: Transaction,
    run: Run,
    *,
    status: RunStatus | _Unset = UNSET,
    context: Mapping[str, Any] | _Unset = UNSET,
    current_step: str | _Unset | None = UNSET,
    last_error: Mapping[str, Any] | _Unset | None = UNSET,
) -> Run:
    """Write changed fields of a run the caller has locked; return the updated record.

    Raises:
        InvalidTransition: a status change the state machine does not allow.
    """
    changes: dict[str, Any] = {}
    if status is not UNSET and status != run.status:
        state_machine.check_transition(run.status, status, run_id=run.id)
        changes["status"] = status
    if context is not UNSET:
        changes["context"] = dict(context)
    if current_step is not UNSET:
        changes["current_step"] = current_step
    if last_error is not UNSET:
        changes["last_error"] = dict(last_error) if last_error is not None else None
    if not changes:
        return run
    changes["updated_at"] = tx.now
    updated = evolve(run, **changes)
    if (
        "status" in changes
        and updated.status in state_machine.TERMINAL
        and tx.connection.dialect.name == "postgresql"
    ):
        # Delivered when the transaction commits, to the run's waiters (wait_for_run), if any
        # client listens.
        _NOTIFY_RUN.send(
            tx.connection,
            {"channel": RUN_CHANNEL, "payload": run.id, "watcher": WATCHER_APPLICATION_NAME},
        )
    params = {
        "run_id": run.id,  # prepared statements take ids as text
        "new_context": dict(updated.context),
        "new_current_step": updated.current_step,
        "new_last_error": dict(updated.last_error) if updated.last_error else None,
        "new_updated_at": tx.now,
    }
    if "status" in changes:
        params["new_status"] = updated.status
    # Nothing to read back: on PostgreSQL the update goes with the transaction's next statement.
    (_WRITE_RUN if "status" in changes else _WRITE_RUN_KEEPING_STATUS).send(tx.connection, params)
    return updated


def transition_run(
    tx: Transaction,
    run_id: object,
    to: RunStatus,
    *,
    context: Mapping[str, Any] | _Unset = UNSET,
    current_step: str | _Unset | None = UNSET,
    last_error: Mapping[str, Any] | _Unset | None = UNSET,
) -> Run:
    """Lock the run and move it to ``to``, writing the given fields too.

    Fields not given are left as they are (the reference clears ``current_step`` when it is
    omitted; here clearing it is explicit: pass ``current_step=None``).

    Raises:
        InvalidRunId, RunNotFound: as :func:`lock_run`.
        InvalidTransition: the state machine does not allow the move (also ``running ->
            running``: moving to the status a run already has is not a transition).
    """
    run = lock_run(tx.connection, run_id)
    state_machine.check_transition(run.status, to, run_id=run.id)
    return write_run(
        tx, run, status=to, context=context, current_step=current_step, last_error=last_error
    )


def update_run(
    tx: Transaction,
    run_id: object,
    *,
    context: Mapping[str, Any] | _Unset = UNSET,
    current_step: str | _Unset | None = UNSET,
    last_error: Mapping[str, Any] | _Unset | None = UNSET,
) -> Run:
    """Lock the run and write the given fields without changing its status.

    Raises:
        InvalidRunId, RunNotFound: as :func:`lock_run`.
    """
    run = lock_run(tx.connection, run_id)
    return write_run(tx, run, context=context, current_step=current_step, last_error=last_error)


def cancel_run(tx: Transaction, run_id: object) -> tuple[Run, RunStatus]:
    """Cancel a run as far as its status allows; return it and the status it had.

    ``pending`` and ``paused`` runs are cancelled at once (a paused step and its running attempt
    are failed with :data:`PAUSE_CANCELLATION_ERROR`). A ``running`` or ``retrying`` run with a
    step run still ``running`` (a step body in flight) moves to ``cancelling`` and finishes when
    that step does; without one (it waits for a timer, a retry delay or a queued step) it is
    cancelled at once, through ``cancelling`` (the state machine has no ``running ->
    cancelled``), with ``last_error`` cleared as a cancelling delivery would. ``current_step`` is
    cleared. Jobs are the caller's business.

    Raises:
        InvalidRunId, RunNotFound: as :func:`lock_run`.
        InvalidTransition: the run is terminal or already cancelling.
    """
    run = lock_run(tx.connection, run_id)
    from_status = run.status
    if from_status in ("pending", "paused", "running", "retrying"):
        error = PAUSE_CANCELLATION_ERROR if from_status == "paused" else WAIT_CANCELLATION_ERROR
        for state in step_run_reads.progress_states(tx.connection, run.id):
            if state.waiting:
                _fail_waiting_step(tx, run, state.key, error)
    if from_status in ("pending", "paused"):
        run = write_run(tx, run, status="cancelled", current_step=None)
    elif from_status in ("running", "retrying"):
        run = write_run(tx, run, status="cancelling", current_step=None)
        if not run_reads.running_steps(tx.connection, run.id):
            run = write_run(tx, run, status="cancelled", last_error=None)
    else:
        raise errors.InvalidTransition(from_status, "cancelling", run_id=run.id)
    return run, from_status


def count_operator_retry(tx: Transaction, run: Run) -> Run:
    """Count one more operator retry of the locked ``run`` (:attr:`Run.operator_retries`)."""
    count = run.operator_retries + 1
    prepared.flush(tx.connection)
    tx.connection.execute(
        runs.update().where(runs.c.id == parse_run_id(run.id)).values(operator_retries=count)
    )
    return evolve(run, operator_retries=count)


def schedule_next_step(run_or_status: Run | str) -> bool:
    """Whether a run (or a run status) should have more step work scheduled."""
    status = run_or_status.status if isinstance(run_or_status, Run) else run_or_status
    return state_machine.schedule_next_step(status)


_RELOCK_RUN = Prepared(
    lambda _: (
        sa.select(
            runs.c.status, runs.c.context, runs.c.current_step, runs.c.last_error, runs.c.updated_at
        )
        .where(runs.c.id == sa.bindparam("run_id"))
        .with_for_update(key_share=True)
    )
)


def _complete_step_and_attempt() -> sa.Update:
    """The running step run ``p_step_run_id`` and its latest attempt ``p_attempt_id`` completed."""
    now = sa.bindparam("p_now", type_=UTCDateTime)
    return (
        step_runs.update()
        .where(
            step_runs.c.id == sa.bindparam("p_step_run_id"),
            step_runs.c.status == "running",
            step_runs.c.attempt_id == sa.bindparam("p_attempt_id", type_=sa.Uuid),
            step_runs.c.attempt_status == "running",
        )
        .values(
            status="completed",
            output=sa.bindparam("p_output", type_=step_runs.c.output.type),
            last_error=sa.null(),
            resume=sa.null(),
            manual=sa.null(),
            updated_at=now,
            attempt_status="completed",
            attempt_error=sa.null(),
            attempt_updated_at=now,
        )
    )


def _relock_and_complete_statement(_dialect: str) -> Any:
    # PostgreSQL only (data-modifying WITH). The main query reads ``locked`` first, which locks
    # the run row; the count is a sub-plan evaluated for that row, so the update runs after
    # the run's lock is held (the lock order of every other writer).
    locked = (
        sa.select(
            runs.c.status, runs.c.context, runs.c.current_step, runs.c.last_error, runs.c.updated_at
        )
        .where(runs.c.id == sa.bindparam("run_id"))
        .with_for_update(key_share=True)
        .cte("locked")
    )
    step_done = _complete_step_and_attempt().returning(step_runs.c.id).cte("step_done")
    return sa.select(
        *locked.c,
        sa.select(sa.func.count()).select_from(step_done).scalar_subquery().label("steps_done"),
    ).select_from(locked)


_RELOCK_AND_COMPLETE = Prepared(_relock_and_complete_statement)


def _complete_step_read_run_statement(_dialect: str) -> Any:
    # SQLite only: RETURNING may hold scalar subqueries over other tables.
    def current(column: sa.Column[Any]) -> Any:
        return (
            sa.select(column)
            .where(runs.c.id == sa.bindparam("run_id"))
            .scalar_subquery()
            .label(column.key)
        )

    return _complete_step_and_attempt().returning(
        *(
            current(column)
            for column in (
                runs.c.status,
                runs.c.context,
                runs.c.current_step,
                runs.c.last_error,
                runs.c.updated_at,
            )
        )
    )


_COMPLETE_STEP_READ_RUN = Prepared(_complete_step_read_run_statement)


def _notify_run_statement(_dialect: str) -> sa.Select[Any]:
    # The backends' own function, not the pg_stat_activity view over it, which joins every
    # backend to pg_database and pg_authid: planned and run, 0.40 ms of the server's time
    # against 0.09 ms; prepared, 0.08 against 0.04 ms.
    activity = sa.func.pg_stat_get_activity(sa.null()).table_valued(
        sa.column("application_name"), sa.column("datid")
    )
    this_database = (
        sa.select(sa.column("oid"))
        .select_from(sa.table("pg_database"))
        .where(sa.column("datname") == sa.func.current_database())
        .scalar_subquery()
    )
    return sa.select(sa.func.pg_notify(sa.bindparam("channel"), sa.bindparam("payload"))).where(
        sa.exists().where(
            activity.c.application_name == sa.bindparam("watcher"),
            activity.c.datid == this_database,
        )
    )


_NOTIFY_RUN = Prepared(_notify_run_statement)


def _write_run_statement(*, status: bool) -> Prepared:
    # Status is written only when it changes: SQLite rewrites the index entries of every
    # column an update sets, changed or not (here the status index's), and each index page it
    # dirties is one more page in the write-ahead log at commit, for every chained step.
    return Prepared(
        lambda _: (
            runs.update()
            .where(runs.c.id == sa.bindparam("run_id"))
            .values(
                **({"status": sa.bindparam("new_status")} if status else {}),
                context=sa.bindparam("new_context"),
                current_step=sa.bindparam("new_current_step"),
                last_error=sa.bindparam("new_last_error"),
                updated_at=sa.bindparam("new_updated_at"),
            )
        )
    )


_WRITE_RUN = _write_run_statement(status=True)
_WRITE_RUN_KEEPING_STATUS = _write_run_statement(status=False)


def _fail_waiting_step(tx: Transaction, run: Run, key: str, error: Mapping[str, Any]) -> None:
    step_run = step_run_reads.get_step_run(tx.connection, run.id, key)
    if step_run is None or step_run.status != "running":
        return
    latest = attempt_store.latest_attempt(tx.connection, step_run.id)
    if latest is not None and latest.status == "running":
        attempt_store.fail_attempt(tx, latest, error)
    step_run_store.fail_step(tx, step_run.id, error)
