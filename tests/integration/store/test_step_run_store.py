"""The step-run store: claiming, scheduling and finishing step runs, guarded against races."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk import StaleRecord
from squidmesh_sdk.error_records import error_record
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import step_run_reads
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store import step_starts as step_start_store
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.records import StepRun
from tests.integration.store.support import T0, at, finish_step, new_run, read, write

POLICY = {"irreversible": False, "compensatable": True}


def _begin(
    db: Database, run_id: str, step: str, input: dict[str, Any], **options: Any
) -> tuple[StepRun, str]:
    return write(db, lambda tx: step_start_store.begin_step(tx, run_id, step, input, **options))


def _schedule(db: Database, run_id: str, *items: Any) -> list[str]:
    return write(db, lambda tx: step_run_store.schedule_steps(tx, run_id, items))


def _stored(db: Database, run_id: str, step: str) -> StepRun:
    step_run = read(db, lambda c: step_run_reads.get_step_run(c, run_id, step))
    assert step_run is not None
    return step_run


def _row_in(db: Database, run_id: str, status: str) -> str:
    """A step run of step ``s`` in ``status``; returns its id."""
    if status == "pending":
        _schedule(db, run_id, ("s", {}))
        return _stored(db, run_id, "s").id
    return write(db, lambda tx: finish_step(tx, run_id, "s", fail=status == "failed")).id


# -- begin_step -------------------------------------------------------------------------------


def test_begin_step_inserts_a_running_row_then_skips_it(db: Database) -> None:
    run_id = new_run(db).id
    first, decision = _begin(db, run_id, "reserve", {"order_id": "o-1"}, recovery=POLICY)
    assert decision == "execute"
    assert (first.run_id, first.step, first.status) == (run_id, "reserve", "running")
    assert (first.input, first.recovery, first.output, first.last_error) == (
        {"order_id": "o-1"},
        POLICY,
        None,
        None,
    )
    assert first.inserted_at == first.updated_at == T0
    assert first == _stored(db, run_id, "reserve")

    again, decision = _begin(db, run_id, "reserve", {"order_id": "other"})
    assert decision == "skip"
    assert again == first


def test_claiming_a_pending_row_keeps_its_input_snapshot(db: Database) -> None:
    run_id = new_run(db).id
    _schedule(db, run_id, ("reserve", {"snapshot": 1}), ("charge", {"snapshot": 2}, POLICY))
    scheduled = _stored(db, run_id, "reserve")

    claimed, decision = write(
        db,
        lambda tx: step_start_store.begin_step(tx, run_id, "reserve", {"new": 1}, {"x": 1}),
        at(1),
    )
    assert decision == "execute"
    assert (claimed.id, claimed.status, claimed.input) == (scheduled.id, "running", {"snapshot": 1})
    assert claimed.recovery == {"x": 1}  # none was scheduled: the claim's policy is kept
    assert (claimed.inserted_at, claimed.updated_at) == (T0, at(1))

    charge, _ = _begin(db, run_id, "charge", {"new": 2}, recovery={"y": 2})
    assert (charge.input, charge.recovery) == ({"snapshot": 2}, POLICY)


def test_claiming_a_failed_row_takes_the_new_input_and_clears_the_failure(db: Database) -> None:
    run_id = new_run(db).id
    failed = write(db, lambda tx: finish_step(tx, run_id, "charge", fail=True))
    assert (failed.status, failed.last_error) == ("failed", error_record("step_error", "boom"))

    retried, decision = write(
        db,
        lambda tx: step_start_store.begin_step(tx, run_id, "charge", {"retry": 2}, POLICY),
        at(5),
    )
    assert decision == "execute"
    assert retried.id == failed.id
    assert (retried.status, retried.input, retried.recovery) == ("running", {"retry": 2}, POLICY)
    assert (retried.output, retried.last_error, retried.resume, retried.manual) == (None,) * 4
    assert retried == _stored(db, run_id, "charge")


def test_a_completed_row_is_never_claimed_again(db: Database) -> None:
    run_id = new_run(db).id
    done = write(db, lambda tx: finish_step(tx, run_id, "reserve", {"r": 1}))
    again, decision = _begin(db, run_id, "reserve", {"new": True})
    assert decision == "skip"
    assert again == done
    assert (again.status, again.output) == ("completed", {"r": 1})


@pytest.mark.parametrize("scheduled_first", [False, True])
def test_concurrent_begin_step_executes_exactly_once(db: Database, scheduled_first: bool) -> None:
    run_id = new_run(db).id
    if scheduled_first:
        _schedule(db, run_id, ("reserve", {"snapshot": True}))
    callers = 8
    barrier = threading.Barrier(callers)
    results: list[tuple[str, str]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def claim(number: int) -> None:
        try:
            barrier.wait(timeout=30)
            with db.transaction(T0) as tx:
                step_run, decision = step_start_store.begin_step(
                    tx, run_id, "reserve", {"caller": number}
                )
            with lock:
                results.append((decision, step_run.id))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    decisions = sorted(decision for decision, _ in results)
    assert decisions == ["execute"] + ["skip"] * (callers - 1)
    stored = _stored(db, run_id, "reserve")
    assert {step_run_id for _, step_run_id in results} == {stored.id}
    assert stored.status == "running"
    assert len(read(db, lambda c: step_run_reads.list_step_runs(c, run_id))) == 1


# -- schedule_step(s) and delete_pending_steps ------------------------------------------------


def test_schedule_step_schedules_once_then_skips_with_the_same_row(db: Database) -> None:
    run_id = new_run(db).id
    first, decision = write(
        db, lambda tx: step_run_store.schedule_step(tx, run_id, "reserve", {"a": 1}, POLICY)
    )
    assert decision == "schedule"
    assert (first.status, first.input, first.recovery) == ("pending", {"a": 1}, POLICY)
    again, decision = write(
        db, lambda tx: step_run_store.schedule_step(tx, run_id, "reserve", {"a": 2}), at(1)
    )
    assert decision == "skip"
    assert again == first

    running, _ = _begin(db, run_id, "charge", {"c": 1})
    after_start, decision = write(
        db, lambda tx: step_run_store.schedule_step(tx, run_id, "charge", {"c": 2})
    )
    assert (decision, after_start) == ("skip", running)


def test_schedule_steps_returns_only_newly_inserted_steps(db: Database) -> None:
    run_id = new_run(db).id
    assert _schedule(db, run_id) == []
    assert _schedule(db, run_id, ("a", {"n": 1}), ("b", {"n": 2}, POLICY)) == ["a", "b"]
    assert _schedule(db, run_id, ("b", {"n": 9}), ("c", {"n": 3})) == ["c"]
    assert _schedule(db, run_id, ("a", {}), ("b", {}), ("c", {})) == []
    stored = read(db, lambda c: step_run_reads.list_step_runs(c, run_id))
    assert [(sr.step, sr.status, sr.input, sr.recovery) for sr in stored] == [
        ("a", "pending", {"n": 1}, None),
        ("b", "pending", {"n": 2}, POLICY),
        ("c", "pending", {"n": 3}, None),
    ]


def test_schedule_steps_is_per_run(db: Database) -> None:
    one, two = new_run(db).id, new_run(db).id
    assert _schedule(db, one, ("a", {})) == ["a"]
    assert _schedule(db, two, ("a", {})) == ["a"]


def test_delete_pending_steps_deletes_only_pending_rows(db: Database) -> None:
    run_id, other_run = new_run(db).id, new_run(db).id
    _schedule(db, run_id, ("a", {}), ("b", {}))
    _schedule(db, other_run, ("b", {}))
    _begin(db, run_id, "a", {})
    _begin(db, run_id, "c", {})
    deleted = write(db, lambda tx: step_run_store.delete_pending_steps(tx, run_id, ["a", "b", "c"]))
    assert deleted == 1
    assert read(db, lambda c: step_run_reads.step_statuses(c, run_id)) == {
        "a": "running",
        "c": "running",
    }
    assert read(db, lambda c: step_run_reads.step_statuses(c, other_run)) == {"b": "pending"}


# -- finishing writes -------------------------------------------------------------------------

Finisher = Callable[[Transaction, str], StepRun]

FINISHERS: dict[str, Finisher] = {
    "complete_step": lambda tx, i: step_run_store.complete_step(tx, i, {"o": 1}),
    "fail_step": lambda tx, i: step_run_store.fail_step(tx, i, error_record("step_error", "x")),
    "complete_manual_step": lambda tx, i: step_run_store.complete_manual_step(
        tx, i, {"o": 1}, {"actor": "ops"}
    ),
    "persist_pause_resume": lambda tx, i: step_run_store.persist_pause_resume(tx, i, {}, "t"),
    "persist_approval_resume": lambda tx, i: step_run_store.persist_approval_resume(
        tx, i, ok_target="a", error_target="b", output_key=None
    ),
}


@pytest.mark.parametrize("status", ["pending", "completed", "failed", None])
@pytest.mark.parametrize("finisher", list(FINISHERS))
def test_finishing_writes_need_a_running_row(
    db: Database, finisher: str, status: str | None
) -> None:
    run_id = new_run(db).id
    step_run_id = _row_in(db, run_id, status) if status else str(uuid.uuid4())
    before = read(db, lambda c: step_run_reads.list_step_runs(c, run_id))
    with pytest.raises(StaleRecord) as raised:
        write(db, lambda tx: FINISHERS[finisher](tx, step_run_id), at(9))
    assert (raised.value.record, raised.value.record_id) == ("step_run", step_run_id)
    assert raised.value.status == status
    assert read(db, lambda c: step_run_reads.list_step_runs(c, run_id)) == before


def test_complete_and_fail_step_record_their_result(db: Database) -> None:
    run_id = new_run(db).id
    a, _ = _begin(db, run_id, "a", {})
    b, _ = _begin(db, run_id, "b", {})
    done = write(db, lambda tx: step_run_store.complete_step(tx, a.id, {"out": 1}), at(2))
    assert (done.status, done.output, done.last_error, done.updated_at) == (
        "completed",
        {"out": 1},
        None,
        at(2),
    )
    failed = write(
        db, lambda tx: step_run_store.fail_step(tx, b.id, error_record("step_error", "no")), at(3)
    )
    assert (failed.status, failed.output, failed.last_error) == (
        "failed",
        None,
        error_record("step_error", "no"),
    )
    assert [done, failed] == read(db, lambda c: step_run_reads.list_step_runs(c, run_id))


def test_pause_resume_is_stored_and_cleared_by_a_manual_completion(db: Database) -> None:
    run_id = new_run(db).id
    step_run, _ = _begin(db, run_id, "hold", {})
    paused = write(
        db, lambda tx: step_run_store.persist_pause_resume(tx, step_run.id, {"k": 1}, "ship")
    )
    assert paused.status == "running"
    assert paused.resume == {"kind": "pause", "output": {"k": 1}, "target": "ship"}
    manual = {"actor": "ops", "comment": "go", "at": "2026-01-01T09:00:00Z"}
    done = write(
        db, lambda tx: step_run_store.complete_manual_step(tx, step_run.id, {"k": 1}, manual)
    )
    assert (done.status, done.output, done.manual, done.resume) == (
        "completed",
        {"k": 1},
        manual,
        None,
    )
    assert done == _stored(db, run_id, "hold")


def test_approval_resume_records_both_routes_and_the_output_key(db: Database) -> None:
    run_id = new_run(db).id
    step_run, _ = _begin(db, run_id, "approve", {})
    stored = write(
        db,
        lambda tx: step_run_store.persist_approval_resume(
            tx, step_run.id, ok_target="ship", error_target="refund", output_key="decision"
        ),
    )
    assert stored.status == "running"
    assert stored.resume == {
        "kind": "approval",
        "ok_target": "ship",
        "error_target": "refund",
        "output_key": "decision",
    }
    assert _stored(db, run_id, "approve").resume == stored.resume


# -- recovery metadata ------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "running", "completed", None])
def test_record_failure_recovery_needs_a_failed_row(db: Database, status: str | None) -> None:
    run_id = new_run(db).id
    if status == "running":
        step_run_id = _begin(db, run_id, "s", {})[0].id
    else:
        step_run_id = _row_in(db, run_id, status) if status else str(uuid.uuid4())
    with pytest.raises(StaleRecord) as raised:
        write(
            db,
            lambda tx: step_run_store.record_failure_recovery(
                tx, step_run_id, strategy="error_route", target="refund"
            ),
        )
    assert raised.value.status == status


def test_record_failure_recovery_adds_the_route_to_the_existing_policy(db: Database) -> None:
    run_id = new_run(db).id
    failed = write(db, lambda tx: finish_step(tx, run_id, "s", recovery=POLICY, fail=True))
    routed = write(
        db,
        lambda tx: step_run_store.record_failure_recovery(
            tx, failed.id, strategy="error_route", target="refund"
        ),
        at(4),
    )
    assert routed.recovery == {**POLICY, "failure": {"strategy": "error_route", "target": "refund"}}
    assert (routed.status, routed.updated_at) == ("failed", at(4))
    assert routed == _stored(db, run_id, "s")


@pytest.mark.parametrize("status", ["pending", "running", "completed", "failed"])
def test_update_recovery_overwrites_whatever_the_status(db: Database, status: str) -> None:
    run_id = new_run(db).id
    if status == "running":
        step_run_id = _begin(db, run_id, "s", {}, recovery=POLICY)[0].id
    else:
        step_run_id = _row_in(db, run_id, status)
    new = {"compensation": {"status": "completed"}}
    updated = write(db, lambda tx: step_run_store.update_recovery(tx, step_run_id, new), at(6))
    assert (updated.status, updated.recovery, updated.updated_at) == (status, new, at(6))
    assert updated == _stored(db, run_id, "s")


def test_update_recovery_of_a_missing_row_is_stale(db: Database) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(StaleRecord) as raised:
        write(db, lambda tx: step_run_store.update_recovery(tx, missing, {}))
    assert (raised.value.record_id, raised.value.status) == (missing, None)


# -- reading ----------------------------------------------------------------------------------


def _complete_out_of_order(db: Database) -> str:
    """Schedule a, b, c, d at T0; complete b, a, c at 1, 2, 3 s; d fails."""
    run_id = new_run(db).id
    _schedule(db, run_id, ("a", {}), ("b", {}), ("c", {}), ("d", {}))
    for seconds, step in enumerate(("b", "a", "c"), start=1):
        write(
            db,
            functools.partial(finish_step, run_id=run_id, step=step, output={step: 1}),
            at(seconds),
        )
    write(db, lambda tx: finish_step(tx, run_id, "d", fail=True), at(4))
    return run_id


def test_completed_steps_and_outputs_are_in_completion_order(db: Database) -> None:
    run_id = _complete_out_of_order(db)
    assert read(db, lambda c: step_run_reads.completed_steps(c, run_id)) == ["b", "a", "c"]
    assert read(db, lambda c: step_run_reads.completed_outputs(c, run_id)) == [
        {"b": 1},
        {"a": 1},
        {"c": 1},
    ]
    assert read(db, lambda c: step_run_reads.step_statuses(c, run_id)) == {
        "a": "completed",
        "b": "completed",
        "c": "completed",
        "d": "failed",
    }


def test_compensation_order_is_newest_completion_first_and_survives_recovery_updates(
    db: Database,
) -> None:
    run_id = _complete_out_of_order(db)

    def order() -> list[str]:
        runs = read(db, lambda c: step_run_reads.completed_step_runs_for_compensation(c, run_id))
        return [step_run.step for step_run in runs]

    assert order() == ["c", "a", "b"]
    oldest = _stored(db, run_id, "b")
    result = {"compensation": {"status": "completed"}}
    write(db, lambda tx: step_run_store.update_recovery(tx, oldest.id, result), at(10))
    assert _stored(db, run_id, "b").updated_at == at(10)
    assert order() == ["c", "a", "b"]


def test_list_step_runs_orders_rows_and_attempts(db: Database) -> None:
    run_id = new_run(db).id
    assert read(db, lambda c: step_run_reads.step_statuses(c, run_id)) == {}
    _schedule(db, run_id, ("c", {}), ("a", {}))

    def attempts_of_b(tx: Transaction) -> None:
        b, _ = step_start_store.begin_step(tx, run_id, "b", {})
        for _ in range(3):
            attempt = attempt_store.begin_attempt(tx, b.id)
            attempt_store.fail_attempt(tx, attempt, error_record("step_error", "x"))

    write(db, attempts_of_b, at(1))
    write(db, lambda tx: finish_step(tx, run_id, "a"), at(2))

    plain = read(db, lambda c: step_run_reads.list_step_runs(c, run_id))
    assert [(sr.step, sr.attempts) for sr in plain] == [("c", None), ("a", None), ("b", None)]
    loaded = read(db, lambda c: step_run_reads.list_step_runs(c, run_id, with_attempts=True))
    assert [sr.step for sr in loaded] == ["c", "a", "b"]
    numbers = {sr.step: [a.number for a in sr.attempts or ()] for sr in loaded}
    assert numbers == {"c": [], "a": [1], "b": [1, 2, 3]}
    assert all(a.step_run_id == sr.id for sr in loaded for a in sr.attempts or ())
    assert read(db, lambda c: step_run_reads.list_step_runs(c, str(uuid.uuid4()))) == []


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_retry_committed_while_the_history_is_read_lists_each_attempt_once(
    db: Database,
) -> None:
    """PostgreSQL, READ COMMITTED: the step runs are read, then their earlier attempts.

    A retry that commits between the two (attempt 1 archived, attempt 2 begun) must not show
    attempt 1 twice (once archived, once as the latest the first query read).
    """
    run_id = new_run(db).id
    step_run, _, first = write(
        db,
        lambda tx: step_start_store.begin_step_with_attempt(
            tx, run_id, "charge", {}, None, str(uuid.uuid4())
        ),
    )
    assert first is not None
    boom = error_record("step_error", "x")

    def retry(tx: Transaction) -> None:
        attempt_store.fail_attempt(tx, first, boom)
        step_run_store.fail_step(tx, step_run.id, boom)
        step_start_store.begin_step_with_attempt(tx, run_id, "charge", {}, None, step_run.id)

    def retry_before_the_attempts_query(
        _conn: object, _cursor: object, statement: str, *_args: object
    ) -> None:
        if not fired and "FROM squidmesh_step_attempts JOIN squidmesh_step_runs" in statement:
            fired.append(statement)
            write(db, retry, at(1))

    fired: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", retry_before_the_attempts_query)
    try:
        with db.engine.connect() as connection:  # READ COMMITTED, PostgreSQL's default
            [loaded] = step_run_reads.list_step_runs(connection, run_id, with_attempts=True)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", retry_before_the_attempts_query)
    assert fired
    # The history as the first query saw it: attempt 1, running.
    assert [(a.number, a.status) for a in loaded.attempts or ()] == [(1, "running")]
    after = read(db, lambda c: step_run_reads.list_step_runs(c, run_id, with_attempts=True))
    assert [(a.number, a.status) for a in after[0].attempts or ()] == [
        (1, "failed"),
        (2, "running"),
    ]


def test_schedule_steps_lists_a_step_given_twice_once(db: Database) -> None:
    run_id = new_run(db).id
    inserted = write(
        db, lambda tx: step_run_store.schedule_steps(tx, run_id, [("a", {}), ("a", {"x": 1})])
    )
    assert inserted == ["a"]
    step_run = read(db, lambda conn: step_run_reads.get_step_run(conn, run_id, "a"))
    assert step_run is not None
    assert step_run.input == {}
