"""The attempt store: attempts numbered 1..n per step run, finished only while running."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from squidmesh_sdk import StaleRecord
from squidmesh_sdk.error_records import error_record
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import step_starts as step_start_store
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.records import Attempt
from squidmesh_sdk.store.schema import attempts
from tests.integration.store.support import at, new_run, read, write

ERROR = error_record("step_error", "declined", retryable=True)


def _step_run(db: Database, step: str = "charge", run_id: str | None = None) -> str:
    run_id = run_id or new_run(db).id
    return write(db, lambda tx: step_start_store.begin_step(tx, run_id, step, {}))[0].id


def _begin(db: Database, step_run_id: str, seconds: float = 0) -> Attempt:
    return write(db, lambda tx: attempt_store.begin_attempt(tx, step_run_id), at(seconds))


def _numbers(db: Database, step_run_id: str) -> list[tuple[int, str]]:
    attempts = read(db, lambda c: attempt_store.list_attempts(c, step_run_id))
    return [(attempt.number, attempt.status) for attempt in attempts]


def test_attempts_are_numbered_from_one_per_step_run(db: Database) -> None:
    run_id = new_run(db).id
    charge, ship = _step_run(db, "charge", run_id), _step_run(db, "ship", run_id)
    assert read(db, lambda c: attempt_store.attempt_count(c, charge)) + 1 == 1  # next: 1
    assert read(db, lambda c: attempt_store.attempt_count(c, charge)) == 0

    first = _begin(db, charge, 1)
    assert (first.step_run_id, first.number, first.status, first.error) == (
        charge,
        1,
        "running",
        None,
    )
    assert first.inserted_at == first.updated_at == at(1)
    write(db, lambda tx: attempt_store.fail_attempt(tx, first, ERROR))
    assert _begin(db, charge, 2).number == 2
    assert _begin(db, ship, 3).number == 1

    assert read(db, lambda c: attempt_store.attempt_count(c, charge)) + 1 == 3  # next: 3
    assert read(db, lambda c: attempt_store.attempt_count(c, charge)) == 2
    assert read(db, lambda c: attempt_store.attempt_count(c, ship)) == 1


def test_several_attempts_in_one_transaction_keep_counting(db: Database) -> None:
    step_run_id = _step_run(db)

    def three(tx: Transaction) -> list[int]:
        numbers = []
        for _ in range(3):
            attempt = attempt_store.begin_attempt(tx, step_run_id)
            attempt_store.fail_attempt(tx, attempt, ERROR)
            numbers.append(attempt.number)
        return numbers

    assert write(db, three) == [1, 2, 3]
    assert _numbers(db, step_run_id) == [(1, "failed"), (2, "failed"), (3, "failed")]


def test_complete_and_fail_record_status_error_and_time(db: Database) -> None:
    step_run_id = _step_run(db)
    first = _begin(db, step_run_id, 1)
    failed = write(db, lambda tx: attempt_store.fail_attempt(tx, first, ERROR), at(2))
    assert (failed.id, failed.number, failed.status, failed.error) == (first.id, 1, "failed", ERROR)
    assert (failed.inserted_at, failed.updated_at) == (at(1), at(2))

    second = _begin(db, step_run_id, 3)
    done = write(db, lambda tx: attempt_store.complete_attempt(tx, second), at(4))
    assert (done.status, done.error, done.updated_at) == ("completed", None, at(4))
    assert read(db, lambda c: attempt_store.list_attempts(c, step_run_id)) == [failed, done]


Finish = Callable[[Transaction, Attempt], Attempt]
FINISHES: dict[str, Finish] = {
    "complete_attempt": attempt_store.complete_attempt,
    "fail_attempt": lambda tx, attempt: attempt_store.fail_attempt(tx, attempt, ERROR),
    "abandon_attempt": lambda tx, attempt: attempt_store.abandon_attempt(tx, attempt, ERROR),
}


@pytest.mark.parametrize("finish", list(FINISHES))
@pytest.mark.parametrize("first", list(FINISHES))
def test_only_a_running_attempt_can_be_finished(db: Database, first: str, finish: str) -> None:
    step_run_id = _step_run(db)
    attempt = _begin(db, step_run_id)
    finished = write(db, lambda tx: FINISHES[first](tx, attempt))
    with pytest.raises(StaleRecord) as raised:
        write(db, lambda tx: FINISHES[finish](tx, attempt), at(9))
    assert (raised.value.record, raised.value.record_id) == ("attempt", attempt.id)
    assert raised.value.status == finished.status
    assert read(db, lambda c: attempt_store.list_attempts(c, step_run_id)) == [finished]


@pytest.mark.parametrize("finish", list(FINISHES))
def test_finishing_a_missing_attempt_is_stale(db: Database, finish: str) -> None:
    step_run_id = _step_run(db)
    running = _begin(db, step_run_id)
    missing = dataclasses.replace(running, id=str(uuid.uuid4()))
    with pytest.raises(StaleRecord) as raised:
        write(db, lambda tx: FINISHES[finish](tx, missing))
    assert (raised.value.record_id, raised.value.status) == (missing.id, None)
    # The step run's running attempt was left alone.
    assert read(db, lambda c: attempt_store.list_attempts(c, step_run_id)) == [running]


def test_latest_attempt_is_the_highest_numbered(db: Database) -> None:
    step_run_id = _step_run(db)
    assert read(db, lambda c: attempt_store.latest_attempt(c, step_run_id)) is None
    first = _begin(db, step_run_id, 1)
    assert read(db, lambda c: attempt_store.latest_attempt(c, step_run_id)) == first
    second = _begin(db, step_run_id, 2)
    assert read(db, lambda c: attempt_store.latest_attempt(c, step_run_id)) == second
    # One left running when a later one began was archived abandoned: nothing finishes it.
    abandoned = dataclasses.replace(
        first, status="abandoned", error=attempt_store.SUPERSEDED_ERROR, updated_at=at(2)
    )
    assert read(db, lambda c: attempt_store.list_attempts(c, step_run_id)) == [abandoned, second]
    with pytest.raises(StaleRecord) as raised:
        write(db, lambda tx: attempt_store.fail_attempt(tx, first, ERROR), at(5))
    assert (raised.value.record_id, raised.value.status) == (first.id, "abandoned")


def test_list_attempts_is_first_to_last_and_per_step_run(db: Database) -> None:
    run_id = new_run(db).id
    charge, ship = _step_run(db, "charge", run_id), _step_run(db, "ship", run_id)
    assert read(db, lambda c: attempt_store.list_attempts(c, charge)) == []
    for seconds in range(3):
        attempt = _begin(db, charge, seconds)
        fail = functools.partial(attempt_store.fail_attempt, attempt=attempt, error=ERROR)
        write(db, fail, at(seconds))
    _begin(db, ship)
    assert _numbers(db, charge) == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert _numbers(db, ship) == [(1, "running")]
    assert read(db, lambda c: attempt_store.list_attempts(c, str(uuid.uuid4()))) == []


def _archived_rows(connection: sa.Connection) -> list[tuple[str, int, str]]:
    rows = connection.execute(
        sa.select(attempts.c.id, attempts.c.attempt_number, attempts.c.status).order_by(
            attempts.c.attempt_number
        )
    ).all()
    return [(str(attempt_id), number, status) for attempt_id, number, status in rows]


def _archived(db: Database) -> list[tuple[str, int, str]]:
    return read(db, _archived_rows)


def test_only_the_attempts_before_the_latest_are_rows_of_the_attempts_table(db: Database) -> None:
    step_run_id = _step_run(db)
    first = _begin(db, step_run_id, 1)
    failed = write(db, lambda tx: attempt_store.fail_attempt(tx, first, ERROR), at(2))
    # A step tried once (whatever its outcome) writes no row there: its step run holds it.
    assert _archived(db) == []
    assert read(db, lambda c: attempt_store.list_attempts(c, step_run_id)) == [failed]
    second = _begin(db, step_run_id, 3)
    assert _archived(db) == [(first.id, 1, "failed")]
    assert read(db, lambda c: attempt_store.list_attempts(c, step_run_id)) == [failed, second]
    assert read(db, lambda c: attempt_store.failed_attempt_count(c, step_run_id)) == 1
    write(db, lambda tx: attempt_store.fail_attempt(tx, second, ERROR), at(4))
    assert read(db, lambda c: attempt_store.failed_attempt_count(c, step_run_id)) == 2


def test_a_retry_rolled_back_before_commit_leaves_the_latest_attempt_in_place(
    db: Database,
) -> None:
    """The archive and the next attempt commit together, or neither does (a crash between)."""
    step_run_id = _step_run(db)
    first = _begin(db, step_run_id, 1)
    failed = write(db, lambda tx: attempt_store.fail_attempt(tx, first, ERROR), at(2))

    def retry_then_crash(tx: Transaction) -> None:
        assert attempt_store.begin_attempt(tx, step_run_id).number == 2
        # Archived within this transaction, not yet committed.
        assert _archived_rows(tx.connection) == [(first.id, 1, "failed")]
        raise RuntimeError("the process died before the commit")

    with pytest.raises(RuntimeError, match="died"):
        write(db, retry_then_crash, at(3))
    assert _archived(db) == []
    assert read(db, lambda c: attempt_store.list_attempts(c, step_run_id)) == [failed]
    assert read(db, lambda c: attempt_store.attempt_count(c, step_run_id)) == 1
    # The retry made again numbers on from the same count.
    assert _begin(db, step_run_id, 4).number == 2
