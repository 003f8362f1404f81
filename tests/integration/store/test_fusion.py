"""Statements sent ahead and fused into one on PostgreSQL: what each statement does and
reports is what it would do alone (on SQLite every statement runs at once: the same results).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk.store import fusion, run_reads, sending
from squidmesh_sdk.store.database import Database, Transaction
from squidmesh_sdk.store.prepared import Prepared
from squidmesh_sdk.store.schema import queue_limits, runs
from tests.integration.store.support import T0, new_run, read, write

_SET_STATUS = Prepared(
    lambda _: (
        runs.update()
        .where(runs.c.id == sa.bindparam("run_id"))
        .values(status=sa.bindparam("status"), updated_at=sa.bindparam("at"))
    )
)
_STEP_IF_RUNNING = Prepared(
    lambda _: (
        runs.update()
        .where(runs.c.id == sa.bindparam("run_id"), runs.c.status == "running")
        .values(current_step=sa.bindparam("step"))
    )
)
_ADD_LIMIT = Prepared(
    lambda _: queue_limits.insert().values(
        queue=sa.bindparam("queue"),
        concurrency=sa.bindparam("concurrency"),
        updated_at=sa.bindparam("at"),
    )
)
_SET_LIMIT = Prepared(
    lambda _: (
        queue_limits.update()
        .where(queue_limits.c.queue == sa.bindparam("queue"))
        .values(concurrency=sa.bindparam("concurrency"))
        .returning(queue_limits.c.queue, queue_limits.c.concurrency, queue_limits.c.updated_at)
    )
)


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    """The statements the database receives meanwhile."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def _params(run_id: str) -> dict[str, Any]:
    """Parameters of ``_SET_STATUS`` making the run ``running``."""
    return {"run_id": run_id, "status": "running", "at": T0}


def _limit(db: Database, queue: str) -> int | None:
    def action(connection: sa.Connection) -> int | None:
        return connection.scalar(
            sa.select(queue_limits.c.concurrency).where(queue_limits.c.queue == queue)
        )

    return read(db, action)


def test_statements_on_different_tables_are_one_statement_with_each_ones_results(
    db: Database,
) -> None:
    run = new_run(db)
    write(db, lambda tx: _ADD_LIMIT.send(tx.connection, {"queue": "q", "concurrency": 1, "at": T0}))
    counts: list[tuple[str, int]] = []

    def action(tx: Transaction) -> list[dict[str, Any]]:
        params = _params(run.id)
        _SET_STATUS.send(tx.connection, params, lambda n: counts.append(("run", n)))
        missing = {**params, "run_id": "00000000-0000-7000-8000-000000000000"}
        _SET_STATUS.send(tx.connection, missing, lambda n: counts.append(("missing", n)))
        return _SET_LIMIT.rows(tx.connection, {"queue": "q", "concurrency": 3})

    with _statements(db) as seen:
        rows = write(db, action)

    assert rows == [{"queue": "q", "concurrency": 3, "updated_at": T0}]
    assert counts == [("run", 1), ("missing", 0)]
    assert read(db, lambda c: run_reads.get_run(c, run.id)).status == "running"
    assert _limit(db, "q") == 3
    if db.dialect == "postgresql":
        # Two statements on the runs table cannot be fused (neither sees the other's write):
        # the first goes alone, the second with the update of the limits.
        assert len(seen) == 2
        assert "squidmesh_fused_1" in seen[1]


def test_a_statement_on_a_table_another_wrote_sees_that_write(db: Database) -> None:
    run = new_run(db)
    counts: list[int] = []

    def action(tx: Transaction) -> None:
        _SET_STATUS.send(tx.connection, _params(run.id))
        _STEP_IF_RUNNING.send(tx.connection, {"run_id": run.id, "step": "charge"}, counts.append)

    write(db, action)

    assert counts == [1]
    assert read(db, lambda c: run_reads.get_run(c, run.id)).current_step == "charge"


def test_the_counts_arrive_when_the_last_statement_returns_no_row(db: Database) -> None:
    run = new_run(db)
    counts: list[int] = []

    def action(tx: Transaction) -> list[dict[str, Any]]:
        params = _params(run.id)
        _SET_STATUS.send(tx.connection, params, counts.append)
        return _SET_LIMIT.rows(tx.connection, {"queue": "nowhere", "concurrency": 3})

    with _statements(db) as seen:
        assert write(db, action) == []
    assert counts == [1]
    assert read(db, lambda c: run_reads.get_run(c, run.id)).status == "running"
    if db.dialect == "postgresql":
        assert len(seen) == 1


def _refuse(count: int) -> None:
    raise LookupError(f"{count} rows")


@pytest.mark.parametrize(
    ("check", "limit_at", "error"),
    [(_refuse, T0, LookupError), (None, None, sa.exc.IntegrityError)],  # None: NOT NULL
    ids=["a_check_raises", "the_database_refuses_one"],
)
def test_a_fused_statement_that_fails_writes_nothing(
    db: Database, check: Any, limit_at: object, error: type[Exception]
) -> None:
    run = new_run(db)

    def action(tx: Transaction) -> None:
        _SET_STATUS.send(tx.connection, _params(run.id), check)
        _ADD_LIMIT.send(tx.connection, {"queue": "q", "concurrency": 1, "at": limit_at})

    with pytest.raises(error):
        write(db, action)
    assert read(db, lambda c: run_reads.get_run(c, run.id)).status == "pending"
    assert _limit(db, "q") is None


def test_statements_held_by_a_transaction_that_fails_are_never_sent(db: Database) -> None:
    run = new_run(db)

    def action(tx: Transaction) -> None:
        _SET_STATUS.send(tx.connection, _params(run.id))
        raise RuntimeError("the caller gives up")

    with pytest.raises(RuntimeError):
        write(db, action)
    # The thread's next transaction, on the connection it keeps, does not send them either.
    write(db, lambda tx: _ADD_LIMIT.send(tx.connection, {"queue": "q", "concurrency": 1, "at": T0}))
    assert read(db, lambda c: run_reads.get_run(c, run.id)).status == "pending"
    assert _limit(db, "q") == 1


def test_a_core_statement_sees_what_was_held_before_it(db: Database) -> None:
    run = new_run(db)

    def action(tx: Transaction) -> tuple[object, object]:
        _SET_STATUS.send(tx.connection, _params(run.id))
        _ADD_LIMIT.send(tx.connection, {"queue": "q", "concurrency": 1, "at": T0})
        status = tx.connection.scalar(
            sa.select(runs.c.status).where(runs.c.id == uuid.UUID(run.id))
        )
        limit = tx.connection.scalar(
            sa.select(queue_limits.c.concurrency).where(queue_limits.c.queue == "q")
        )
        return status, limit

    assert tuple(write(db, action)) == ("running", 1)


def test_a_statement_a_check_sends_is_sent_before_the_commit(db: Database) -> None:
    run = new_run(db)

    def then_add_limit(tx: Transaction) -> Any:
        def check(count: int) -> None:
            assert count == 1
            _ADD_LIMIT.send(tx.connection, {"queue": "q", "concurrency": 2, "at": T0})

        return check

    def action(tx: Transaction) -> None:
        params = _params(run.id)
        _SET_STATUS.send(tx.connection, params, then_add_limit(tx))

    write(db, action)
    assert _limit(db, "q") == 2
    # Nothing is left over for the thread's next transaction either.
    write(db, lambda tx: _SET_STATUS.send(tx.connection, {**_params(run.id), "status": "paused"}))
    assert read(db, lambda c: run_reads.get_run(c, run.id)).status == "paused"
    assert _limit(db, "q") == 2


def test_split_refuses_statements_that_lock_rows_or_order_theirs() -> None:
    assert fusion.split("SELECT a FROM t WHERE id = %(id)s FOR UPDATE") is None
    assert fusion.split("SELECT a FROM t FOR NO KEY UPDATE SKIP LOCKED") is None
    # Advisory locks too: a claim takes its keys' locks after its writes, in sorted order.
    assert fusion.split("SELECT pg_advisory_xact_lock(%(v0)s::BIGINT) AS l0") is None
    assert fusion.split("SELECT pg_try_advisory_xact_lock(%(v0)s::BIGINT) AS locked") is None
    assert fusion.split("SELECT pg_advisory_lock_shared(%(v0)s::BIGINT) AS l0") is None
    assert fusion.split("SELECT a FROM t ORDER BY a") is None
    # An ORDER BY inside a subquery orders nothing the fused statement returns.
    inner = fusion.split("UPDATE t SET a = 1 WHERE id IN (SELECT id FROM t ORDER BY id LIMIT 1)")
    assert inner is not None
    assert not inner.returns_rows
    # A column named "returning" inside a subquery is no RETURNING clause.
    parts = fusion.split("UPDATE t SET a = (SELECT b.returning FROM b LIMIT 1)")
    assert parts is not None
    assert not parts.returns_rows


def test_split_refuses_what_a_scan_of_parentheses_could_misread() -> None:
    assert fusion.split("UPDATE t SET a = %(a)s WHERE id = %(id)s") is not None
    assert fusion.split("UPDATE t SET a = 'x(' WHERE id = %(id)s") is None
    assert fusion.split("UPDATE t SET a = 1 -- (\n WHERE id = %(id)s") is None
    assert fusion.split("WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r") is None
    assert fusion.split("WITH r AS MATERIALIZED (SELECT 1) SELECT * FROM r") is None
    assert fusion.split("WITH r AS (SELECT 1), r AS (SELECT 2) SELECT * FROM r") is None
    assert fusion.split("SELECT (1") is None
    assert fusion.split("SAVEPOINT here") is None
    assert fusion.split("WITH r AS (SELECT 1) VALUES (1)") is None


def test_split_hoists_with_queries_and_fuse_renames_parameters() -> None:
    parts = fusion.split(
        "WITH done AS (UPDATE a SET x = %(x)s RETURNING a.id) SELECT count(*) FROM done"
    )
    assert parts is not None
    assert parts.queries == ("done AS (UPDATE a SET x = %(x)s RETURNING a.id)",)
    assert parts.main == "SELECT count(*) FROM done"
    other = fusion.split("DELETE FROM b WHERE id = %(x)s AND y = %(y)s OR x2 = %(x)s")
    assert other is not None
    assert not other.returns_rows
    assert other.parameters == ("x", "y")
    assert fusion.fuse([parts, other], rows_of_last=False) == (
        "WITH done AS (UPDATE a SET x = %(f0_0)s RETURNING a.id), "
        "squidmesh_fused_0 AS (SELECT count(*) FROM done), "
        "squidmesh_fused_1 AS (DELETE FROM b WHERE id = %(f1_0)s AND y = %(f1_1)s OR x2 = %(f1_0)s"
        " RETURNING 1) "
        "SELECT (SELECT count(*) FROM squidmesh_fused_0) AS squidmesh_count_0, "
        "(SELECT count(*) FROM squidmesh_fused_1) AS squidmesh_count_1"
    )
    assert fusion.renamed(1, other) == {"x": "f1_0", "y": "f1_1"}


def _long_update(table: str, columns: int) -> fusion.Parts:
    sets = ", ".join(f"column_{n} = %(value_{n})s" for n in range(columns))
    parts = fusion.split(f"UPDATE {table} SET {sets} WHERE id = %(id)s")
    assert parts is not None
    return parts


def test_a_part_s_size_bounds_what_it_adds_to_any_fused_statement() -> None:
    group = [_long_update(f"t{n}", 5 + n) for n in range(8)]
    for count in range(1, 9):
        fused = fusion.fuse(group[:count], rows_of_last=True)
        assert len(fused.encode()) <= fusion.FIXED_SIZE + sum(p.size for p in group[:count])
    assert group[0].parameters == (*(f"value_{n}" for n in range(5)), "id")


def _held(parts: fusion.Parts, table: str) -> sending._Held:
    compiled = SimpleNamespace(parts=parts, tables=frozenset({table}))
    return sending._Held(compiled, {}, None)  # type: ignore[arg-type]


def test_groups_stay_within_the_size_and_parameters_psycopg_caches() -> None:
    # Four statements of 30 parameters: two would be 60 (over 50).
    many = [_held(_long_update(f"p{n}", 29), f"p{n}") for n in range(4)]
    assert [len(group) for group in sending._groups(many)] == [1, 1, 1, 1]
    # Twelve short statements: eight to a group (the most fused), then the rest.
    short = [_held(_long_update(f"s{n}", 1), f"s{n}") for n in range(12)]
    assert [len(group) for group in sending._groups(short)] == [8, 4]
    # Statements of 1.5 KiB: two fit in 4 KiB, three do not.
    wide = fusion.split("UPDATE w SET " + ", ".join(f"c{n} = c{n} + 1" for n in range(110)))
    assert wide is not None
    assert 1400 < wide.size < 2000
    groups = sending._groups([_held(wide, f"w{n}") for n in range(5)])
    assert [len(group) for group in groups] == [2, 2, 1]
