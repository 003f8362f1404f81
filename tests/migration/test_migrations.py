"""Migrations create exactly the declared schema, once, even when run concurrently."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    SchemaNotReady,
    SchemaTooNew,
    Worker,
    Workflow,
    manual,
)
from squidmesh_sdk.store import migrations, schema
from squidmesh_sdk.store.database import Database

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _schema_differences(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, schema.metadata))
    finally:
        engine.dispose()


def _version(url: str) -> int:
    database = Database(url)
    try:
        with database.read() as connection:
            return migrations.current_version(connection)
    finally:
        database.dispose()


def test_migrating_an_empty_database_yields_exactly_the_declared_metadata(
    empty_database_url: str,
) -> None:
    database = Database(empty_database_url)
    try:
        applied = migrations.migrate(database, NOW)
    finally:
        database.dispose()
    assert applied == [m.version for m in migrations.MIGRATIONS]
    assert _schema_differences(empty_database_url) == []
    assert _version(empty_database_url) == migrations.LATEST_VERSION


def test_printed_sql_builds_the_same_schema(empty_database_url: str) -> None:
    dialect = sa.make_url(empty_database_url).get_backend_name()
    script = migrations.sql(dialect)
    engine = sa.create_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            for statement in script.split(";\n"):
                lines = [ln for ln in statement.splitlines() if not ln.startswith("--")]
                if "\n".join(lines).strip():
                    connection.exec_driver_sql("\n".join(lines))
    finally:
        engine.dispose()
    assert _schema_differences(empty_database_url) == []
    assert _version(empty_database_url) == migrations.LATEST_VERSION


def test_migrating_again_applies_nothing(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    try:
        assert migrations.migrate(database, NOW) != []
        assert migrations.migrate(database, NOW) == []
    finally:
        database.dispose()
    assert _schema_differences(empty_database_url) == []


def test_concurrent_migrations_apply_each_version_once(empty_database_url: str) -> None:
    database = Database(empty_database_url)
    results: list[list[int]] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(4)

    def migrate() -> None:
        barrier.wait()
        try:
            results.append(migrations.migrate(database, NOW))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.dispose()
    assert failures == []
    all_versions = [m.version for m in migrations.MIGRATIONS]
    assert sorted(results, key=len) == [[], [], [], all_versions]
    assert _schema_differences(empty_database_url) == []


def test_a_client_on_an_unmigrated_database_says_how_to_fix_it(empty_database_url: str) -> None:
    workflow = Workflow("noop", triggers=[manual("go")])
    workflow.chain(workflow.log("hello", message="hi"), COMPLETE)
    with Client(empty_database_url, [workflow]) as client:
        with pytest.raises(SchemaNotReady, match="squidmesh migrate") as raised:
            client.start_run(workflow)
        assert (raised.value.current, raised.value.required) == (0, migrations.LATEST_VERSION)
        assert client.migrate() == [m.version for m in migrations.MIGRATIONS]
        assert client.start_run(workflow).workflow == "noop"


RUN_ID = "01a2529d-de23-70b3-823e-6d4b4e427e48"


@pytest.mark.parametrize(
    "call",
    [
        lambda client: client.cancel_run(RUN_ID),
        lambda client: client.replay_run(RUN_ID),
        lambda client: client.unblock_run(RUN_ID),
        lambda client: client.approve_run(RUN_ID, actor="ops"),
        lambda client: client.reject_run(RUN_ID, actor="ops"),
        lambda client: client.retry_run(RUN_ID),
        lambda client: client.signal(RUN_ID, "paid"),
        lambda client: client.inspect_run(RUN_ID),
        lambda client: client.explain_run(RUN_ID),
    ],
    ids=[
        "cancel",
        "replay",
        "unblock",
        "approve",
        "reject",
        "retry",
        "signal",
        "inspect",
        "explain",
    ],
)
def test_every_call_on_a_run_asks_for_the_migration_first(
    empty_database_url: str, call: Callable[[Client], object]
) -> None:
    # Not "no such table: squidmesh_runs" from the driver.
    workflow = Workflow("noop", triggers=[manual("go")])
    workflow.chain(workflow.log("hello", message="hi"), COMPLETE)
    with (
        Client(empty_database_url, [workflow]) as client,
        pytest.raises(SchemaNotReady, match="squidmesh migrate"),
    ):
        call(client)


def test_a_schema_migrated_by_a_newer_release_is_refused_everywhere(database_url: str) -> None:
    latest = migrations.LATEST_VERSION
    database = Database(database_url)
    with database.transaction(NOW) as tx:
        tx.connection.execute(
            schema.migrations.insert().values(version=latest + 1, name="future", applied_at=NOW)
        )
    workflow = Workflow("noop", triggers=[manual("go")])
    workflow.chain(workflow.log("hello", message="hi"), COMPLETE)
    expected = (
        f"the squidmesh schema is at version {latest + 1}, newer than this library's {latest}; "
        "upgrade squidmesh_sdk"
    )
    try:
        with pytest.raises(SchemaTooNew) as raised:
            migrations.migrate(database, NOW)
        assert str(raised.value) == expected
        assert (raised.value.current, raised.value.required) == (latest + 1, latest)
        assert raised.value.code == "schema_too_new"
        assert isinstance(raised.value, SchemaNotReady)
        with Client(database, [workflow], executor=DatabaseExecutor()) as client:
            with pytest.raises(SchemaTooNew, match=re.escape(expected)):
                client.migrate()
            with pytest.raises(SchemaTooNew, match=re.escape(expected)):
                client.start_run(workflow)
            with pytest.raises(SchemaTooNew, match=re.escape(expected)):
                client.list_runs()
            worker = Worker(client, poll_interval=0.05)
            with pytest.raises(SchemaTooNew, match=re.escape(expected)):
                worker.start()
            with pytest.raises(SchemaTooNew, match=re.escape(expected)):
                worker.run()
        assert _version(database_url) == latest + 1
        with database.read() as connection:
            assert connection.scalar(sa.select(sa.func.count()).select_from(schema.runs)) == 0
    finally:
        database.dispose()


def test_sql_refuses_an_unsupported_dialect() -> None:
    with pytest.raises(ValueError, match="mysql"):
        migrations.sql("mysql")
