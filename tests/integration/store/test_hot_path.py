"""What the step hot path relies on: prepared statements' conversions, lean writes and reads,
and the connection each thread keeps between transactions."""

from __future__ import annotations

import json
import os
import threading
import uuid
from datetime import timedelta, timezone
from typing import Any, cast

import pytest
import sqlalchemy as sa

from squidmesh_sdk import RunNotFound
from squidmesh_sdk.errors import StaleRecord
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import json_text, run_reads, step_run_reads
from squidmesh_sdk.store import runs as run_store
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store import step_starts as step_start_store
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.ids import new_id
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.records import Attempt, Run
from squidmesh_sdk.store.schema import runs
from tests.integration.store.support import T0, at, move, new_run, read, write

_SELECT = Prepared(
    lambda _: sa.select(runs.c.id, runs.c.replayed_from_run_id, runs.c.updated_at).where(
        runs.c.id == sa.bindparam("run_id")
    )
)
_SET_STATUS = Prepared(
    lambda _: (
        runs.update()
        .where(runs.c.id == sa.bindparam("run_id"))
        .values(status=sa.bindparam("status"))
    )
)
_TOUCH = Prepared(
    lambda _: (
        runs.update()
        .where(runs.c.id == sa.bindparam("run_id"))
        .values(updated_at=sa.bindparam("at"))
    )
)


def test_prepared_statements_take_ids_as_strings_or_uuids_and_return_canonical_strings(
    db: Database,
) -> None:
    run = new_run(db)
    for key in (run.id, uuid.UUID(run.id)):
        row = read(db, lambda c, key=key: _SELECT.first(c, {"run_id": key}))  # type: ignore[misc]
        assert row is not None
        assert row["id"] == run.id
        assert isinstance(row["id"], str)
        assert row["replayed_from_run_id"] is None


def test_prepared_statements_reject_malformed_ids(db: Database) -> None:
    with pytest.raises(ValueError, match="hexadecimal UUID"):
        read(db, lambda c: _SELECT.first(c, {"run_id": "not-a-uuid"}))


def test_prepared_times_are_the_ones_sqlalchemy_writes_and_reads(db: Database) -> None:
    run = new_run(db)
    # Written by a prepared statement in another zone: SQLAlchemy reads back the same instant.
    moment = (T0 + timedelta(microseconds=7)).astimezone(timezone(timedelta(hours=5)))
    write(db, lambda tx: _TOUCH.execute(tx.connection, {"run_id": run.id, "at": moment}))
    core = read(
        db,
        lambda c: c.scalar(sa.select(runs.c.updated_at).where(runs.c.id == uuid.UUID(run.id))),
    )
    assert core == moment
    # Compared in SQL with a time SQLAlchemy binds: the stored text sorts as the instant does.
    later = read(
        db,
        lambda c: c.scalar(sa.select(sa.func.count()).where(runs.c.updated_at > at(0))),
    )
    assert later == 1
    row = read(db, lambda c: _SELECT.first(c, {"run_id": run.id}))
    assert row is not None
    assert row["updated_at"] == moment
    assert row["updated_at"].utcoffset() == timedelta(0)


@pytest.mark.parametrize("where", ["engine", "Engine class", "Connection class", "connection"])
def test_statement_listeners_see_prepared_statements_wherever_they_listen(
    db: Database, where: str
) -> None:
    run = new_run(db)
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    def set_status(tx: Transaction, status: str) -> None:
        _SET_STATUS.execute(tx.connection, {"run_id": run.id, "status": status})

    def listened(tx: Transaction) -> None:
        if where == "connection":
            sa.event.listen(tx.connection, "before_cursor_execute", record)
        try:
            set_status(tx, "paused")
        finally:
            if where == "connection":
                sa.event.remove(tx.connection, "before_cursor_execute", record)
        set_status(tx, "running")  # after the connection's listener left

    classes = {"Engine class": sa.Engine, "Connection class": sa.Connection}
    target: Any = {"engine": db.engine, **classes}.get(where)
    # Listening on a class flags it for good (SQLAlchemy's _has_events): put the flag back.
    flags = {cls: vars(cls).get("_has_events") for cls in classes.values()}
    if target is not None:
        sa.event.listen(target, "before_cursor_execute", record)
    try:
        write(db, listened)
    finally:
        if target is not None:
            sa.event.remove(target, "before_cursor_execute", record)
        for cls, flag in flags.items():
            cls._has_events = flag  # type: ignore[attr-defined,union-attr]
    updates = [sql for sql in seen if "UPDATE squidmesh_runs SET status" in sql]
    # The engine's listeners see both updates; the connection's only the first.
    assert len(updates) == (1 if where == "connection" else 2)
    seen.clear()
    write(db, lambda tx: set_status(tx, "paused"))  # every listener removed
    assert seen == []


def test_relock_run_refreshes_what_a_run_can_change(db: Database) -> None:
    run = new_run(db, trace_context={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    move(db, run.id, "running", now=at(1), context={"a": 1}, current_step="charge")
    relocked = write(db, lambda tx: run_store.relock_run(tx.connection, run), at(2))
    assert relocked == read(db, lambda c: run_reads.get_run(c, run.id))
    assert (relocked.status, relocked.context, relocked.current_step) == (
        "running",
        {"a": 1},
        "charge",
    )


def test_relock_run_of_a_deleted_run_raises_run_not_found(db: Database) -> None:
    run = new_run(db)
    write(db, lambda tx: tx.connection.execute(runs.delete()))
    with pytest.raises(RunNotFound):
        write(db, lambda tx: run_store.relock_run(tx.connection, run))


def _driver_connection(db: Database) -> object:
    with db.transaction(T0) as tx:
        return tx.connection.connection.dbapi_connection


def test_a_thread_keeps_its_connection_between_transactions(db: Database) -> None:
    first = _driver_connection(db)
    assert _driver_connection(db) is first
    if db.dialect == "postgresql":  # SQLite has one writer: nested writes would wait forever
        with db.transaction(T0) as outer:
            # A transaction opened inside another one cannot share its connection.
            inner = _driver_connection(db)
            assert outer.connection.connection.dbapi_connection is first
            assert inner is not first
        # One connection is kept, not two.
        assert _driver_connection(db) is inner
        first = inner
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(_driver_connection(db)))
    thread.start()
    thread.join()
    assert found[0] is not first


def _fail_in_transaction(db: Database, used: list[sa.Connection]) -> None:
    with db.transaction(T0) as tx:
        used.append(tx.connection)
        raise RuntimeError("boom")


def test_a_failed_transaction_closes_its_connection_instead_of_keeping_it(db: Database) -> None:
    first = _driver_connection(db)
    used: list[sa.Connection] = []
    with pytest.raises(RuntimeError):
        _fail_in_transaction(db, used)
    assert used[0].closed
    assert _driver_connection(db) is not first


def test_dispose_closes_kept_connections(db: Database) -> None:
    with db.transaction(T0) as tx:
        kept = tx.connection
    db.dispose()
    assert kept.closed
    # The database still works afterwards, on a new connection.
    new_run(db)


def test_a_statement_sent_ahead_is_seen_by_every_later_statement(db: Database) -> None:
    run = new_run(db)

    def action(tx: Transaction) -> tuple[object, object, object]:
        written = run_store.write_run(tx, run, status="running", current_step="charge")
        # A Core statement, a prepared one, and a driver-level read all see the write.
        core = tx.connection.scalar(
            sa.select(runs.c.status).where(runs.c.id == uuid.UUID(written.id))
        )
        relocked = run_store.relock_run(tx.connection, run)
        return core, relocked.status, relocked.current_step

    assert write(db, action) == ("running", "running", "charge")
    assert read(db, lambda c: run_reads.get_run(c, run.id)).status == "running"


def test_a_statement_sent_ahead_that_fails_rolls_the_transaction_back(db: Database) -> None:
    run = new_run(db)

    def action(tx: Transaction) -> None:
        run_store.write_run(tx, run, status="running")
        _SET_STATUS.send(tx.connection, {"run_id": run.id, "status": None})  # NOT NULL

    with pytest.raises(sa.exc.IntegrityError):
        write(db, action)
    assert read(db, lambda c: run_reads.get_run(c, run.id)).status == "pending"


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(
    db: Database,
) -> None:
    parent = _driver_connection(db)
    pid = os.fork()
    if pid == 0:  # the child: exit at once, whatever happens
        code = 1
        try:
            code = 0 if _driver_connection(db) is not parent else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection survived the child (which did not close it).
    assert _driver_connection(db) is parent
    new_run(db)


def test_a_step_run_begins_with_its_next_attempt(db: Database) -> None:
    run = new_run(db)

    def claim(tx: Transaction, step: str) -> tuple[str, str, str, object]:
        fresh = str(new_id())
        step_run, action, attempt = step_start_store.begin_step_with_attempt(
            tx, run.id, step, {"in": 1}, None, fresh
        )
        first = (attempt.step_run_id, attempt.number, attempt.status) if attempt else None
        return action, step_run.status, "fresh" if step_run.id == fresh else "kept", first

    # A new step run: inserted running with attempt 1, both under the id chosen here.
    action, status, which, first = write(db, lambda tx: claim(tx, "reserve"))
    assert (action, status, which) == ("execute", "running", "fresh")
    assert first is not None
    assert first[1:] == (1, "running")
    # Running already: nothing is written.
    assert write(db, lambda tx: claim(tx, "reserve"))[:3] == ("skip", "running", "kept")
    # A scheduled (pending) step run is claimed, keeping its id, with attempt 1.
    write(db, lambda tx: step_run_store.schedule_steps(tx, run.id, [("charge", {"in": 0})]))
    step_run = read(db, lambda c: step_run_reads.get_step_run(c, run.id, "charge"))
    assert step_run is not None
    assert write(db, lambda tx: claim(tx, "charge")) == (
        "execute",
        "running",
        "kept",
        (step_run.id, 1, "running"),
    )
    # A failed step run claimed again (a retry) keeps its id and gets the next attempt.
    attempt = read(db, lambda c: attempt_store.list_attempts(c, step_run.id))[0]
    write(db, lambda tx: attempt_store.fail_attempt(tx, attempt, {"message": "boom"}))
    write(db, lambda tx: step_run_store.fail_step(tx, step_run.id, {"message": "boom"}))
    assert write(db, lambda tx: claim(tx, "charge")) == (
        "execute",
        "running",
        "kept",
        (step_run.id, 2, "running"),
    )
    numbers = read(db, lambda c: [a.number for a in attempt_store.list_attempts(c, step_run.id)])
    assert numbers == [1, 2]


def test_the_attempt_a_step_run_begins_with_is_the_one_stored(db: Database) -> None:
    run = new_run(db)
    _, _, begun = write(
        db,
        lambda tx: step_start_store.begin_step_with_attempt(
            tx, run.id, "reserve", {}, None, str(new_id())
        ),
        at(1.5),
    )
    assert begun is not None
    assert read(db, lambda c: attempt_store.latest_attempt(c, begun.step_run_id)) == begun
    write(db, lambda tx: step_run_store.schedule_steps(tx, run.id, [("charge", {})]))
    started = write(
        db, lambda tx: step_start_store.start_scheduled(tx, run.id, "charge", None), at(2.25)
    )
    assert started is not None
    assert (
        read(db, lambda c: attempt_store.latest_attempt(c, started[1].step_run_id)) == (started[1])
    )


def test_a_scheduled_step_run_starts_with_its_next_attempt(db: Database) -> None:
    run = new_run(db)
    write(db, lambda tx: step_run_store.schedule_steps(tx, run.id, [("charge", {"in": 0})]))

    def start(tx: Transaction) -> tuple[int, str, str] | None:
        started = step_start_store.start_scheduled(tx, run.id, "charge", None)
        if started is None:
            return None
        step_run, attempt = started
        return attempt.number, attempt.status, step_run.status

    assert write(db, start) == (1, "running", "running")
    assert write(db, start) is None  # running: not scheduled any more
    # Failed (a retry): its attempt 1 is archived and attempt 2 begins, in one transaction.
    [first] = read(db, lambda c: attempt_store.list_attempts(c, step_run_id_of(db, run.id)))
    write(db, lambda tx: attempt_store.fail_attempt(tx, first, {"message": "boom"}))
    write(db, lambda tx: step_run_store.fail_step(tx, first.step_run_id, {"message": "boom"}))
    assert write(db, start) == (2, "running", "running")
    attempts = read(db, lambda c: attempt_store.list_attempts(c, first.step_run_id))
    assert [(a.number, a.status) for a in attempts] == [(1, "failed"), (2, "running")]


def step_run_id_of(db: Database, run_id: str) -> str:
    step_run = read(db, lambda c: step_run_reads.get_step_run(c, run_id, "charge"))
    assert step_run is not None
    return step_run.id


def _running_step(db: Database) -> tuple[Run, str, Attempt]:
    run = new_run(db)

    def claim(tx: Transaction) -> tuple[str, Attempt]:
        step_run, _ = step_start_store.begin_step(tx, run.id, "reserve", {"in": 1})
        return step_run.id, attempt_store.begin_attempt(tx, step_run.id)

    step_run_id, attempt = write(db, claim)
    return run, step_run_id, attempt


def test_relock_and_complete_locks_the_run_and_completes_attempt_and_step_run(
    db: Database,
) -> None:
    run, step_run_id, attempt = _running_step(db)
    move(db, run.id, "running", now=at(1), context={"seen": 1})
    relocked = write(
        db,
        lambda tx: run_store.relock_and_complete(tx, run, attempt, {"out": 2}),
        at(2),
    )
    # The run as it is now (not as the caller read it), the outcome written.
    assert (relocked.status, relocked.context, relocked.updated_at) == (
        "running",
        {"seen": 1},
        at(1),
    )
    step_run = read(db, lambda c: step_run_reads.get_step_run(c, run.id, "reserve"))
    assert step_run is not None
    assert (step_run.status, step_run.output, step_run.updated_at) == (
        "completed",
        {"out": 2},
        at(2),
    )
    [attempt] = read(db, lambda c: attempt_store.list_attempts(c, step_run_id))
    assert (attempt.status, attempt.updated_at) == ("completed", at(2))
    # Again: both are stale now, and the transaction writes nothing.
    with pytest.raises(StaleRecord, match="attempt"):
        write(db, lambda tx: run_store.relock_and_complete(tx, run, attempt, {}))


def test_relock_and_complete_of_a_finished_step_run_is_stale(db: Database) -> None:
    run, step_run_id, attempt = _running_step(db)
    # Only the step run was finished (by a takeover, say): the outcome is stale all the same.
    write(db, lambda tx: step_run_store.fail_step(tx, step_run_id, {"message": "taken"}))
    with pytest.raises(StaleRecord, match="step_run"):
        write(db, lambda tx: run_store.relock_and_complete(tx, run, attempt, {}))
    [attempt] = read(db, lambda c: attempt_store.list_attempts(c, step_run_id))
    assert attempt.status == "running"  # rolled back with the rest


def test_relock_and_complete_of_a_deleted_run_raises_run_not_found(db: Database) -> None:
    run, _, attempt = _running_step(db)
    write(
        db, lambda tx: tx.connection.execute(sa.delete(runs).where(runs.c.id == uuid.UUID(run.id)))
    )
    with pytest.raises(RunNotFound):
        write(db, lambda tx: run_store.relock_and_complete(tx, run, attempt, {}))


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_relock_and_complete_takes_the_run_lock_before_touching_the_attempt(
    db: Database,
) -> None:
    """PostgreSQL (one statement there): waiting for the run's lock, it has written nothing.

    Another transaction holds the run's lock and takes the step over meanwhile (abandons the
    attempt, fails the step run): it never waits for the outcome's statement (no deadlock),
    and the outcome, once it gets the lock, finds its attempt stale.
    """
    # PostgreSQL only: SQLite's write transactions are exclusive, so it has no lock order.
    run, step_run_id, attempt = _running_step(db)
    outcome: list[BaseException | Run] = []

    def complete() -> None:
        try:
            outcome.append(
                write(
                    db,
                    lambda tx: run_store.relock_and_complete(tx, run, attempt, {"out": 1}),
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
            outcome.append(exc)

    with db.engine.connect() as watcher, db.engine.connect() as other, other.begin():
        other.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
        other.execute(sa.select(runs.c.id).where(runs.c.id == uuid.UUID(run.id)).with_for_update())
        thread = threading.Thread(target=complete)
        thread.start()
        # Wait until the outcome's statement waits for the run's lock.
        for _ in range(500):
            waiting = watcher.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE '%step_done%'"
                )
            )
            watcher.rollback()  # a new snapshot of pg_stat_activity each time
            if waiting:
                break
            threading.Event().wait(0.01)
        assert waiting == 1
        # These would wait for (and deadlock with) the outcome if it had updated them already.
        abandoned = {"message": "taken over"}
        attempt_store.abandon_attempt(Transaction(other, at(1)), attempt, abandoned)
        step_run_store.fail_step(Transaction(other, at(1)), step_run_id, abandoned)
    thread.join(10)
    assert not thread.is_alive()
    [result] = outcome
    assert isinstance(result, StaleRecord)
    [attempt] = read(db, lambda c: attempt_store.list_attempts(c, step_run_id))
    assert attempt.status == "abandoned"


@pytest.mark.postgres
def test_json_is_read_with_json_text_on_squidmesh_s_own_engine_only(
    postgres_database_url: str,
) -> None:
    import psycopg
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    host_engine = sa.create_engine(postgres_database_url)
    own, hosted = Database(postgres_database_url), Database(host_engine)
    try:
        for database, reader in ((own, json_text.loads_bytes), (hosted, json.loads)):
            with database.read() as connection:
                value = connection.execute(
                    sa.text("""SELECT '{"k": [1, "ü", null]}'::jsonb, '[1.5]'::json""")
                ).one()
                assert tuple(value) == ({"k": [1, "ü", None]}, [1.5])
                raw = cast("psycopg.Connection[Any]", connection.connection.dbapi_connection)
                for name in ("json", "jsonb"):
                    info = TypeInfo.fetch(raw, name)
                    assert info is not None
                    for format in (Format.TEXT, Format.BINARY):
                        loader = raw.adapters.get_loader(info.oid, format)
                        assert loader is not None
                        assert getattr(loader, "_loads", None) is reader, (name, format)
    finally:
        own.dispose()
        hosted.dispose()
        host_engine.dispose()


@pytest.mark.postgres
def test_a_json_loader_registered_with_psycopg_is_kept_on_squidmesh_s_own_engine(
    postgres_database_url: str,
) -> None:
    from psycopg.types.json import set_json_loads

    def host_loads(data: str | bytes) -> Any:  # e.g. a host that reads numbers as Decimal
        return {"host": json.loads(data)}

    set_json_loads(host_loads)  # psycopg-wide, as a host would at its start
    own = Database(postgres_database_url)
    try:
        with own.read() as connection:
            value = connection.execute(sa.text("""SELECT '{"k": 1}'::jsonb""")).scalar()
        assert value == {"host": {"k": 1}}
    finally:
        set_json_loads(json.loads)
        own.dispose()
