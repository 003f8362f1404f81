"""Migration 9 (flow control) upgrades a version-8 database with work in its queue."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from squidmesh_sdk import Client, DatabaseExecutor, Worker, compile
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import migrations, schema
from squidmesh_sdk.store.database import Database
from tests.integration.worker.conftest import settled, wait_until
from tests.migration.support import NOW, greeting, migrate_to_version


def _insert(connection: sa.Connection, table: sa.Table, **values: object) -> None:
    """Insert ``values`` into ``table``'s named columns only (the older schema lacks others)."""
    older = sa.table(table.name, *(sa.column(name, table.c[name].type) for name in values))
    connection.execute(sa.insert(older).values(**values))


def test_queued_work_of_version_8_gets_priority_0_no_key_and_still_runs(
    empty_database_url: str,
) -> None:
    definition = compile(greeting())
    database = Database(empty_database_url)
    run_id = uuid.uuid4()
    try:
        migrate_to_version(database, 8)
        # What the previous release wrote, in its columns only: a run and its queued job.
        with database.transaction(NOW) as tx:
            columns = {c["name"] for c in sa.inspect(tx.connection).get_columns("squidmesh_jobs")}
            assert "priority" not in columns
            _insert(
                tx.connection,
                schema.runs,
                id=run_id,
                workflow="greeting",
                trigger="start",
                status="pending",
                payload={},
                context={},
                current_step="hello",
                definition_fingerprint=definition.fingerprint,
                definition_version=definition.version,
                inserted_at=NOW,
                updated_at=NOW,
            )
            _insert(
                tx.connection,
                schema.jobs,
                queue="default",
                kind="step",
                payload={"kind": "step", "run_id": str(run_id), "step": "hello"},
                run_id=run_id,
                step="hello",
                workflow="greeting",
                definition_version=definition.version,
                status="queued",
                run_at=NOW,
                deliveries=0,
                rescues=0,
                inserted_at=NOW,
                updated_at=NOW,
            )
        assert migrations.migrate(database, NOW) == list(range(9, migrations.LATEST_VERSION + 1))
    finally:
        database.dispose()
    with Client(empty_database_url, [greeting()], executor=DatabaseExecutor()) as client:
        assert client.inspect_run(str(run_id)).priority == 0
        with client.database.read() as connection:
            (job,) = job_store.list_jobs(connection)
        assert (job.priority, job.concurrency_key, job.concurrency_limit) == (0, None, None)
        assert client.queue_limits() == []
        with Worker(client, poll_interval=0.05):
            wait_until(settled(client, [client.inspect_run(str(run_id))]), what="the run")
        assert client.inspect_run(str(run_id)).status == "completed"
