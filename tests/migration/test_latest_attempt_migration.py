"""Migration 11 moves each step run's latest attempt into its row; history reads the same.

The attempts table keeps finished attempts only, and refuses an older release's running one.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from squidmesh_sdk import compile
from squidmesh_sdk.store import attempts as attempt_store
from squidmesh_sdk.store import migrations, schema
from squidmesh_sdk.store.database import Database
from squidmesh_sdk.store.records import Attempt
from tests.migration.support import NOW, greeting, insert_greeting_run, migrate_to_version

ERROR = {"message": "declined", "kind": "step_error"}


def _attempt(step_run_id: uuid.UUID, number: int, status: str, **more: object) -> dict[str, object]:
    at = NOW + timedelta(seconds=number)
    return {
        "id": uuid.uuid4(),
        "step_run_id": step_run_id,
        "attempt_number": number,
        "status": status,
        "error": None,
        "inserted_at": at,
        "updated_at": at,
        **more,
    }


def _insert_version_10_rows(
    database: Database, run_id: uuid.UUID, step_runs: dict[uuid.UUID, tuple[str, str]]
) -> None:
    definition = compile(greeting())
    with database.transaction(NOW) as tx:
        insert_greeting_run(
            tx.connection,
            run_id,
            definition,
            status="running",
            at=NOW,
            context={},
            definition_version=definition.version,
        )
        for step_run_id, (step, status) in step_runs.items():
            tx.connection.execute(
                sa.insert(schema.step_runs).values(
                    id=step_run_id,
                    run_id=run_id,
                    step=step,
                    status=status,
                    input={},
                    inserted_at=NOW,
                    updated_at=NOW,
                )
            )


def test_version_10_attempts_move_the_latest_into_the_step_run_and_read_back_unchanged(
    empty_database_url: str,
) -> None:
    database = Database(empty_database_url)
    retried, once, scheduled, superseded = (uuid.uuid4() for _ in range(4))
    try:
        migrate_to_version(database, 10)
        _insert_version_10_rows(
            database,
            uuid.uuid4(),
            {
                retried: ("hello", "running"),
                once: ("b", "completed"),
                scheduled: ("c", "pending"),
                superseded: ("d", "completed"),
            },
        )
        rows = [
            _attempt(retried, 1, "failed", error=ERROR),
            _attempt(retried, 2, "running"),
            _attempt(once, 1, "completed"),
            # An older release began attempt 2 without finishing attempt 1.
            _attempt(superseded, 1, "running"),
            _attempt(superseded, 2, "completed"),
        ]
        with database.transaction(NOW) as tx:
            tx.connection.execute(sa.insert(schema.attempts), rows)
        expected = {
            step_run: [Attempt.from_row(row) for row in rows if row["step_run_id"] == step_run]
            for step_run in (retried, once, scheduled, superseded)
        }
        # An attempt a later one superseded while it was marked running was abandoned by it.
        expected[superseded][0] = dataclasses.replace(
            expected[superseded][0], status="abandoned", error=attempt_store.SUPERSEDED_ERROR
        )

        assert migrations.migrate(database, NOW) == list(range(11, migrations.LATEST_VERSION + 1))

        with database.read() as connection:
            for step_run_id, attempts in expected.items():
                assert attempt_store.list_attempts(connection, step_run_id) == attempts
            latest = attempt_store.latest_attempt(connection, retried)
            assert latest is not None
            assert (latest.id, latest.number, latest.status) == (str(rows[1]["id"]), 2, "running")
            counts = [attempt_store.attempt_count(connection, s) for s in expected]
            assert counts == [2, 1, 0, 2]
            assert attempt_store.latest_attempt(connection, scheduled) is None
            # Only the attempts a later one followed are still rows of the table.
            left = connection.execute(sa.select(schema.attempts.c.id)).scalars().all()
            assert sorted(map(str, left)) == sorted(str(rows[n]["id"]) for n in (0, 3))
        # A process of an older release inserts its running attempts in the table: refused.
        with (
            pytest.raises(sa.exc.IntegrityError, match="ck_squidmesh_step_attempts_finished"),
            database.transaction(NOW) as tx,
        ):
            tx.connection.execute(sa.insert(schema.attempts), [_attempt(retried, 3, "running")])
        # The next attempt is numbered on from the migrated count.
        with database.transaction(NOW) as tx:
            attempt_store.fail_attempt(tx, latest, ERROR)
            third = attempt_store.begin_attempt(tx, retried)
        assert third.number == 3
        with database.read() as connection:
            numbers = [a.number for a in attempt_store.list_attempts(connection, retried)]
        assert numbers == [1, 2, 3]
    finally:
        database.dispose()
