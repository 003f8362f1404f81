"""Migration 11 moves each step run's latest attempt into its row; history reads the same."""

from __future__ import annotations

import uuid
from datetime import timedelta

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
        "inserted_at": at,
        "updated_at": at,
        "error": None,
        **more,
    }


def test_version_10_attempts_move_the_latest_into_the_step_run_and_read_back_unchanged(
    empty_database_url: str,
) -> None:
    definition = compile(greeting())
    database = Database(empty_database_url)
    run_id = uuid.uuid4()
    retried, once, scheduled = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        migrate_to_version(database, 10)
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
            for step_run_id, step, status in (
                (retried, "hello", "running"),
                (once, "b", "completed"),
                (scheduled, "c", "pending"),
            ):
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
            rows = [
                _attempt(retried, 1, "failed", error=ERROR),
                _attempt(retried, 2, "running"),
                _attempt(once, 1, "completed"),
            ]
            tx.connection.execute(sa.insert(schema.attempts), rows)
        before = {
            step_run_id: [
                Attempt.from_row(row) for row in rows if row["step_run_id"] == step_run_id
            ]
            for step_run_id in (retried, once, scheduled)
        }

        assert migrations.migrate(database, NOW) == list(range(11, migrations.LATEST_VERSION + 1))

        with database.read() as connection:
            for step_run_id, old in before.items():
                assert attempt_store.list_attempts(connection, step_run_id) == old
            latest = attempt_store.latest_attempt(connection, retried)
            assert latest is not None
            assert (latest.id, latest.number, latest.status) == (str(rows[1]["id"]), 2, "running")
            assert [attempt_store.attempt_count(connection, s) for s in before] == [2, 1, 0]
            assert attempt_store.latest_attempt(connection, scheduled) is None
            # Only the earlier attempt of the retried step is still a row of the table.
            left = connection.execute(sa.select(schema.attempts.c.id)).scalars().all()
            assert [str(attempt_id) for attempt_id in left] == [str(rows[0]["id"])]
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
