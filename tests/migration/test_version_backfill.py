"""Migration 5 pins the runs of a version-4 database to the version their workflow now has."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from squidmesh_sdk import Client, DatabaseExecutor, Worker, compile
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import migrations, schema
from squidmesh_sdk.store.database import Database
from tests.integration.worker.conftest import settled, wait_until
from tests.migration.support import NOW, greeting, insert_greeting_run, migrate_to_version


def test_runs_and_jobs_from_before_versions_are_pinned_and_still_run(
    empty_database_url: str,
) -> None:
    definition = compile(greeting())
    database = Database(empty_database_url)
    run_id = uuid.uuid4()
    try:
        migrate_to_version(database, 4)
        # What a release without versions wrote: a run and its queued first job.
        with database.transaction(NOW) as tx:
            insert_greeting_run(
                tx.connection,
                run_id,
                definition,
                status="pending",
                at=NOW,
                context={},
                current_step="hello",
            )
            tx.connection.execute(
                sa.insert(schema.jobs).values(
                    queue="default",
                    kind="step",
                    payload={"kind": "step", "run_id": str(run_id), "step": "hello"},
                    run_id=run_id,
                    step="hello",
                    status="queued",
                    run_at=NOW,
                    deliveries=0,
                    rescues=0,
                    inserted_at=NOW,
                    updated_at=NOW,
                )
            )
        # Migration 5 and every later one.
        assert migrations.migrate(database, NOW) == list(range(5, migrations.LATEST_VERSION + 1))
    finally:
        database.dispose()
    client = Client(empty_database_url, [greeting()], executor=DatabaseExecutor())
    with client:
        run = client.inspect_run(str(run_id))
        assert run.definition_version == definition.version
        with client.database.read() as connection:
            (job,) = job_store.list_jobs(connection)
        assert (job.workflow, job.definition_version) == ("greeting", definition.version)
        with Worker(client, poll_interval=0.05):
            wait_until(settled(client, [run]), what="the pre-upgrade run to finish")
        assert client.inspect_run(str(run_id)).status == "completed"
