"""What the migration tests share: a one-step workflow and a database stopped at a version."""

from __future__ import annotations

from datetime import UTC, datetime

from squidmesh_sdk import COMPLETE, Workflow, manual
from squidmesh_sdk.store import migrations, schema
from squidmesh_sdk.store.database import Database

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def greeting() -> Workflow:
    """A one-step workflow: ``hello`` returns ``{"said": "hello"}``."""
    workflow = Workflow("greeting", triggers=[manual("start")])

    @workflow.step
    def hello() -> dict[str, str]:
        return {"said": "hello"}

    workflow.transition(hello, on="ok", to=COMPLETE)
    return workflow


def migrate_to_version(database: Database, version: int) -> None:
    """Apply migrations 1 to ``version`` only, recorded as an older release would have."""
    with database.transaction(NOW) as tx:
        schema.migrations.create(tx.connection)
        for migration in migrations.MIGRATIONS[:version]:
            for statement in migration.statements(database.dialect):
                tx.connection.exec_driver_sql(statement)
            tx.connection.execute(
                schema.migrations.insert().values(
                    version=migration.version, name=migration.name, applied_at=NOW
                )
            )
