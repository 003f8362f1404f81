"""The run store: creating, reading, listing, moving, cancelling and replaying runs."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from squidmesh_sdk import (
    InvalidPayload,
    InvalidRunId,
    InvalidTransition,
    InvalidTrigger,
    RunNotFound,
    UnsafeReplay,
    error_records,
)
from squidmesh_sdk.clock import use_clock
from squidmesh_sdk.error_records import error_record
from squidmesh_sdk.state_machine import STATES
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import audit, run_creation, run_reads, step_run_reads
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store import step_starts as step_start_store
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.records import Run
from squidmesh_sdk.testing import FakeClock
from tests.integration.store.support import (
    ORDER,
    T0,
    at,
    fanout_definition,
    finish_step,
    move,
    new_run,
    orders_definition,
    read,
    write,
)


def _get(db: Database, run_id: str, **options: Any) -> Run:
    return read(db, lambda c: run_reads.get_run(c, run_id, **options))


def _list(db: Database, **options: Any) -> list[str]:
    return [run.id for run in read(db, lambda c: run_reads.list_runs(c, **options))]


# -- create_run -------------------------------------------------------------------------------


def test_create_run_defaults_to_the_first_trigger_and_resolves_payload_defaults(
    db: Database,
) -> None:
    definition = orders_definition()
    with use_clock(FakeClock(datetime(2026, 3, 4, 12, tzinfo=UTC))):
        run = new_run(db, definition)
    assert (run.workflow, run.trigger, run.status) == ("orders", "checkout", "pending")
    assert run.payload == {**ORDER, "currency": "EUR", "placed_on": "2026-03-04"}
    assert run.context == {}
    assert run.current_step == "reserve"
    assert run.last_error is None
    assert run.replayed_from_run_id is None
    assert run.definition_fingerprint == definition.fingerprint
    assert run.inserted_at == run.updated_at == T0
    assert _get(db, run.id) == run


def test_create_run_with_an_explicit_trigger_uses_its_contract(db: Database) -> None:
    run = new_run(db, payload={"order_id": "o-2"}, trigger="refund")
    assert run.trigger == "refund"
    assert _get(db, run.id).payload == {"order_id": "o-2"}


def test_create_run_stores_context_trace_context_and_replay_link(db: Database) -> None:
    source = new_run(db)
    run = new_run(
        db,
        context={"seed": 1},
        trace_context={"traceparent": "00-abc-def-01"},
        replayed_from_run_id=source.id,
    )
    stored = _get(db, run.id)
    assert stored.context == {"seed": 1}
    assert stored.trace_context == {"traceparent": "00-abc-def-01"}
    assert stored.replayed_from_run_id == source.id


def test_dependency_workflow_runs_have_no_current_step(db: Database) -> None:
    run = new_run(db, fanout_definition(), {"order_id": "o-1"})
    assert run.current_step is None
    assert _get(db, run.id).current_step is None


def test_unknown_trigger_raises_invalid_trigger_and_writes_nothing(db: Database) -> None:
    with db.transaction(T0) as tx, pytest.raises(InvalidTrigger) as raised:
        run_creation.create_run(tx, orders_definition(), ORDER, trigger="nope")
    assert raised.value.trigger == "nope"
    assert raised.value.known == ("checkout", "refund")
    assert _list(db) == []


def test_invalid_payload_lists_every_problem_and_writes_nothing(db: Database) -> None:
    definition = orders_definition()
    with db.transaction(T0) as tx:
        with pytest.raises(InvalidPayload) as raised:
            run_creation.create_run(tx, definition, {"amount_cents": "lots", "coupon": "X"})
        # The transaction goes on to commit: the failed create must have left nothing behind.
        run_creation.create_run(tx, definition, {"order_id": "o-2"}, trigger="refund")
    assert raised.value.missing_fields == ("order_id",)
    assert raised.value.unknown_fields == ("coupon",)
    assert list(raised.value.invalid_fields) == ["amount_cents"]
    assert [run.trigger for run in read(db, run_reads.list_runs)] == ["refund"]


# -- get_run ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["nope", "", 42, None])
def test_get_run_rejects_ids_that_are_not_uuids(db: Database, bad: object) -> None:
    with pytest.raises(InvalidRunId) as raised:
        _get(db, bad)  # type: ignore[arg-type]
    assert raised.value.run_id == bad


def test_get_run_of_an_unknown_uuid_raises_run_not_found(db: Database) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(RunNotFound) as raised:
        _get(db, missing)
    assert raised.value.run_id == missing


def test_get_run_accepts_a_uuid_object(db: Database) -> None:
    run = new_run(db)
    assert _get(db, uuid.UUID(run.id)) == run  # type: ignore[arg-type]


def test_get_run_with_history_loads_step_runs_attempts_and_events(db: Database) -> None:
    run = new_run(db)

    def history(tx: Transaction) -> None:
        finish_step(tx, run.id, "reserve", {"reservation": "r-1"})
        charge, _ = step_start_store.begin_step(tx, run.id, "charge", {"order_id": "o-1"})
        first = attempt_store.begin_attempt(tx, charge.id)
        attempt_store.fail_attempt(tx, first, error_record("step_error", "declined"))
        attempt_store.begin_attempt(tx, charge.id)
        audit.record_event(
            tx, run.id, "paused", step="charge", actor={"name": "ops"}, comment="hold"
        )

    write(db, history)
    write(db, lambda tx: audit.record_event(tx, run.id, "resumed", metadata={"k": 1}), at(5))

    loaded = _get(db, run.id, include_history=True)
    steps = [(sr.step, sr.status) for sr in loaded.step_runs or ()]
    assert steps == [("reserve", "completed"), ("charge", "running")]
    charge = loaded.step_run("charge")
    assert charge is not None
    assert [(a.number, a.status, a.error) for a in charge.attempts or ()] == [
        (1, "failed", error_record("step_error", "declined")),
        (2, "running", None),
    ]
    reserve = loaded.step_run("reserve")
    assert reserve is not None
    assert reserve.output == {"reservation": "r-1"}
    assert [
        (e.type, e.step, e.actor, e.comment, e.metadata, e.at) for e in loaded.events or ()
    ] == [
        ("paused", "charge", {"name": "ops"}, "hold", None, T0),
        ("resumed", None, None, None, {"k": 1}, at(5)),
    ]

    plain = _get(db, run.id)
    assert (plain.step_runs, plain.events) == (None, None)


# -- list_runs --------------------------------------------------------------------------------


def test_list_runs_is_newest_first_with_filters_and_limit(db: Database) -> None:
    first = new_run(db, now=T0)
    latest = new_run(db, fanout_definition(), {"order_id": "o-1"}, now=at(10))
    middle = new_run(db, now=at(5))
    move(db, middle.id, "running", now=at(6))

    def two(tx: Transaction) -> list[str]:
        return [run_creation.create_run(tx, orders_definition(), ORDER).id for _ in range(2)]

    same_a, same_b = write(db, two, at(20))

    assert _list(db) == [same_b, same_a, latest.id, middle.id, first.id]
    assert _list(db, workflow="fanout") == [latest.id]
    assert _list(db, status="running") == [middle.id]
    assert _list(db, workflow="orders", status="pending") == [same_b, same_a, first.id]
    assert _list(db, workflow="fanout", status="running") == []
    assert _list(db, limit=2) == [same_b, same_a]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"status": "bogus"}, "unknown run status 'bogus'"),
        ({"status": "Pending"}, "unknown run status 'Pending'"),
        ({"limit": 0}, "limit must be an integer from 1 to 2,147,483,647, got 0"),
        ({"limit": -1}, "limit must be an integer from 1 to 2,147,483,647, got -1"),
        ({"limit": True}, "limit must be an integer from 1 to 2,147,483,647, got True"),
        ({"limit": 2.0}, "limit must be an integer from 1 to 2,147,483,647, got 2.0"),
        # Was OverflowError: Python int too large to convert to SQLite INTEGER.
        ({"limit": 10**20}, "limit must be an integer from 1 to 2,147,483,647, got 10000"),
    ],
)
def test_list_runs_rejects_bad_arguments(
    db: Database, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _list(db, **options)


# -- transition_run and update_run -----------------------------------------------------------


def test_a_forbidden_transition_raises_and_changes_nothing(db: Database) -> None:
    run = new_run(db)
    with pytest.raises(InvalidTransition) as raised:
        move(db, run.id, "completed")
    assert (raised.value.from_status, raised.value.to_status) == ("pending", "completed")
    assert raised.value.run_id == run.id
    assert _get(db, run.id) == run

    move(db, run.id, "running")
    with pytest.raises(InvalidTransition) as same:
        move(db, run.id, "running")
    assert (same.value.from_status, same.value.to_status) == ("running", "running")


def test_transition_run_of_a_missing_run_raises_run_not_found(db: Database) -> None:
    with pytest.raises(RunNotFound):
        move(db, str(uuid.uuid4()), "running")


def test_transition_run_writes_only_the_fields_it_is_given(db: Database) -> None:
    run = new_run(db)
    moved = move(
        db,
        run.id,
        "running",
        now=at(1),
        context={"a": 1},
        last_error=error_record("step_error", "x"),
    )
    assert moved == _get(db, run.id)
    assert (moved.status, moved.context, moved.current_step) == ("running", {"a": 1}, "reserve")
    assert (moved.last_error, moved.updated_at, moved.inserted_at) == (
        error_record("step_error", "x"),
        at(1),
        T0,
    )

    retrying = move(db, run.id, "retrying", now=at(2), current_step="charge")
    assert retrying == _get(db, run.id)
    assert (retrying.context, retrying.last_error) == ({"a": 1}, error_record("step_error", "x"))
    assert retrying.current_step == "charge"

    cleared = move(db, run.id, "running", now=at(3), current_step=None, last_error=None)
    assert cleared == _get(db, run.id)
    assert (cleared.current_step, cleared.last_error, cleared.context) == (None, None, {"a": 1})


def test_update_run_writes_fields_without_changing_status(db: Database) -> None:
    run = new_run(db)
    updated = write(
        db,
        lambda tx: run_store.update_run(tx, run.id, context={"b": 2}, current_step="ship"),
        at(4),
    )
    assert updated == _get(db, run.id)
    assert (updated.status, updated.context, updated.current_step) == ("pending", {"b": 2}, "ship")
    assert updated.updated_at == at(4)

    unchanged = write(db, lambda tx: run_store.update_run(tx, run.id), at(9))
    assert unchanged == updated == _get(db, run.id)


# -- cancel_run -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "step_running", "expected"),
    [
        ((), False, "cancelled"),
        (("running",), True, "cancelling"),
        (("running", "retrying"), True, "cancelling"),
        # No step body runs: waiting for a timer, a queued step or a retry delay.
        (("running",), False, "cancelled"),
        (("running", "retrying"), False, "cancelled"),
        (("running", "paused"), False, "cancelled"),
    ],
)
def test_cancel_run_moves_as_far_as_the_status_allows(
    db: Database, path: tuple[str, ...], step_running: bool, expected: str
) -> None:
    run = new_run(db)
    if step_running:
        write(db, lambda tx: step_start_store.begin_step(tx, run.id, "reserve", {}))
    boom = error_records.error_record("step_error", "boom")
    fields = {"last_error": boom} if path[-1:] == ("retrying",) else {}
    before = move(db, run.id, *path, **fields) if path else run
    cancelled, from_status = write(db, lambda tx: run_store.cancel_run(tx, run.id), at(7))
    assert from_status == before.status
    assert cancelled == _get(db, run.id)
    assert (cancelled.status, cancelled.updated_at) == (expected, at(7))
    assert cancelled.current_step is None
    # Cancelled at once like a cancelling run's delivery would: the retry's error is cleared.
    assert cancelled.last_error == (before.last_error if expected == "cancelling" else None)


def test_cancelling_a_paused_run_fails_its_paused_step_and_running_attempt(db: Database) -> None:
    run = new_run(db)

    def pause(tx: Transaction) -> str:
        finish_step(tx, run.id, "reserve")
        run_store.transition_run(tx, run.id, "running", current_step="charge")
        step_run, _ = step_start_store.begin_step(tx, run.id, "charge", {})
        attempt_store.begin_attempt(tx, step_run.id)
        step_run_store.persist_pause_resume(tx, step_run.id, {}, "ship")
        run_store.transition_run(tx, run.id, "paused")
        return step_run.id

    charge_id = write(db, pause)
    run_after, from_status = write(db, lambda tx: run_store.cancel_run(tx, run.id), at(3))
    assert (from_status, run_after.status) == ("paused", "cancelled")

    charge = read(db, lambda c: step_run_reads.get_step_run(c, run.id, "charge"))
    assert charge is not None
    assert (charge.status, charge.resume) == ("failed", None)
    assert charge.last_error == run_store.PAUSE_CANCELLATION_ERROR
    attempt = read(db, lambda c: attempt_store.latest_attempt(c, charge_id))
    assert attempt is not None
    assert (attempt.status, attempt.error) == ("failed", run_store.PAUSE_CANCELLATION_ERROR)
    statuses = read(db, lambda c: step_run_reads.step_statuses(c, run.id))
    assert statuses == {"reserve": "completed", "charge": "failed"}


@pytest.mark.parametrize(
    "path",
    [("running", "completed"), ("failed",), ("cancelled",), ("running", "cancelling")],
)
def test_cancel_run_refuses_terminal_and_cancelling_runs(
    db: Database, path: tuple[str, ...]
) -> None:
    before = move(db, new_run(db).id, *path)
    with pytest.raises(InvalidTransition) as raised:
        write(db, lambda tx: run_store.cancel_run(tx, before.id), at(8))
    assert (raised.value.from_status, raised.value.to_status) == (before.status, "cancelling")
    assert _get(db, before.id) == before


# -- replay_run -------------------------------------------------------------------------------

SCHEDULE = {"trigger": "refund", "scheduled_for": "2026-01-01T08:00:00Z"}


def test_replay_creates_a_linked_pending_run_with_the_same_payload(db: Database) -> None:
    definition = orders_definition()
    schedule = {**SCHEDULE, "idempotency": "skip_duplicate", "idempotency_key": "k-1"}
    source = new_run(
        db,
        payload={"order_id": "o-9"},
        trigger="refund",
        context={"schedule": schedule, "reservation": "r-9"},
    )

    def run_and_fail(tx: Transaction) -> None:
        run_store.transition_run(tx, source.id, "running")
        finish_step(tx, source.id, "reserve")
        finish_step(tx, source.id, "charge", fail=True)  # failed steps do not block a replay
        run_store.transition_run(
            tx, source.id, "failed", last_error=error_record("step_error", "boom")
        )

    write(db, run_and_fail)
    source_before = _get(db, source.id, include_history=True)

    replay = write(
        db,
        lambda tx: run_creation.replay_run(tx, definition, source.id, trace_context={"t": "1"}),
        at(60),
    )
    assert replay.id != source.id
    assert (replay.status, replay.trigger, replay.workflow) == ("pending", "refund", "orders")
    assert replay.replayed_from_run_id == source.id
    assert replay.payload == source.payload
    assert replay.context == {"schedule": SCHEDULE}
    assert (replay.current_step, replay.last_error) == ("reserve", None)
    assert (replay.inserted_at, replay.trace_context) == (at(60), {"t": "1"})
    assert replay == _get(db, replay.id)
    assert read(db, lambda c: step_run_reads.list_step_runs(c, replay.id)) == []
    assert _get(db, source.id, include_history=True) == source_before


def test_replay_is_blocked_by_completed_irreversible_and_non_compensatable_steps(
    db: Database,
) -> None:
    definition = orders_definition()
    source = new_run(db)

    def complete_three(tx: Transaction) -> None:
        for step in ("reserve", "charge", "ship"):
            finish_step(tx, source.id, step)

    write(db, complete_three)
    # The transaction commits after the refusal: the refused replay must have written nothing.
    with db.transaction(at(1)) as tx, pytest.raises(UnsafeReplay) as raised:
        run_creation.replay_run(tx, definition, source.id)
    assert raised.value.run_id == source.id
    policy = {"replay": "manual_review_required", "recovery": "manual_intervention"}
    assert raised.value.steps == (
        {"step": "charge", "irreversible": True, "compensatable": False, **policy},
        {"step": "ship", "irreversible": False, "compensatable": False, **policy},
    )
    assert "charge, ship" in str(raised.value)
    assert _list(db) == [source.id]

    allowed = write(
        db, lambda tx: run_creation.replay_run(tx, definition, source.id, allow_irreversible=True)
    )
    assert (allowed.status, allowed.context) == ("pending", {})
    assert _list(db) == [allowed.id, source.id]


def test_replay_uses_the_recovery_policy_persisted_on_the_step_run(db: Database) -> None:
    definition = orders_definition()
    source = new_run(db)

    def complete(tx: Transaction) -> None:
        # charge is irreversible in the definition, notify is not: the stored policy wins.
        finish_step(tx, source.id, "charge", recovery={"irreversible": False})
        finish_step(tx, source.id, "notify", recovery={"irreversible": True})

    write(db, complete)
    with pytest.raises(UnsafeReplay) as raised:
        write(db, lambda tx: run_creation.replay_run(tx, definition, source.id))
    assert [step["step"] for step in raised.value.steps] == ["notify"]


def test_replay_of_an_unknown_run_raises_run_not_found(db: Database) -> None:
    with pytest.raises(RunNotFound):
        write(db, lambda tx: run_creation.replay_run(tx, orders_definition(), str(uuid.uuid4())))


# -- schedule_next_step -----------------------------------------------------------------------


def test_schedule_next_step_accepts_a_run_or_a_status(db: Database) -> None:
    run = new_run(db)
    assert run_store.schedule_next_step(run) is True
    assert run_store.schedule_next_step(move(db, run.id, "running", "paused")) is False
    scheduled = {status for status in STATES if run_store.schedule_next_step(status)}
    assert scheduled == {"pending", "running", "retrying"}


def test_records_come_back_in_utc_whatever_zone_the_transaction_was_stamped_in(
    db: Database,
) -> None:
    paris = datetime(2026, 1, 1, 10, tzinfo=timezone(timedelta(hours=1)))
    run = write(db, lambda tx: run_creation.create_run(tx, orders_definition(), ORDER), paris)
    assert run.inserted_at.tzinfo == UTC
    assert run.inserted_at == paris


def test_a_replay_link_to_a_missing_run_is_refused(db: Database) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(RunNotFound):
        write(
            db,
            lambda tx: run_creation.create_run(
                tx, orders_definition(), ORDER, replayed_from_run_id=missing
            ),
        )
