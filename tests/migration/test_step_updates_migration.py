"""Migration 10 drops the runs index on ``updated_at``; the purge still finds old runs."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from squidmesh_sdk import Client, compile
from squidmesh_sdk.store import migrations
from squidmesh_sdk.store.database import Database
from squidmesh_sdk.testing import FakeClock
from tests.migration.support import NOW, greeting, insert_greeting_run, migrate_to_version


def _run_indexes(connection: sa.Connection) -> set[str]:
    return {index["name"] for index in sa.inspect(connection).get_indexes("squidmesh_runs")}


def test_version_9_runs_lose_the_updated_at_index_and_old_ones_are_still_purged(
    empty_database_url: str,
) -> None:
    definition = compile(greeting())
    database = Database(empty_database_url)
    old, recent = uuid.uuid4(), uuid.uuid4()
    try:
        migrate_to_version(database, 9)
        with database.transaction(NOW) as tx:
            assert "ix_squidmesh_runs_status_updated_at_id" in _run_indexes(tx.connection)
            for run_id, age in ((old, timedelta(days=60)), (recent, timedelta(days=1))):
                insert_greeting_run(
                    tx.connection,
                    run_id,
                    definition,
                    status="completed",
                    at=NOW - age,
                    context={"said": "hello"},
                    definition_version=definition.version,
                )
        assert migrations.migrate(database, NOW) == list(range(10, migrations.LATEST_VERSION + 1))
        with database.read() as connection:
            indexes = _run_indexes(connection)
        assert "ix_squidmesh_runs_status_updated_at_id" not in indexes
        assert "ix_squidmesh_runs_status_inserted_at" in indexes
    finally:
        database.dispose()
    with Client(empty_database_url, [greeting()], clock=FakeClock(NOW)) as client:
        assert client.purge_runs(older_than=timedelta(days=30)).runs == 1
        assert [run.id for run in client.list_runs()] == [str(recent)]
