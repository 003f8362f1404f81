"""What the migration tests share: a one-step workflow and a database stopped at a version."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from squidmesh_sdk import COMPLETE, Workflow, manual
from squidmesh_sdk.graph import WorkflowDefinition
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


def insert_greeting_run(
    connection: sa.Connection,
    run_id: uuid.UUID,
    definition: WorkflowDefinition,
    *,
    status: str,
    at: datetime,
    **columns: Any,
) -> None:
    """Write a run of :func:`greeting` straight into ``squidmesh_runs``, as a release stopped
    at an older version would have: the columns every version has, and ``columns``."""
    connection.execute(
        sa.insert(schema.runs).values(
            id=run_id,
            workflow="greeting",
            trigger="start",
            status=status,
            payload={},
            definition_fingerprint=definition.fingerprint,
            inserted_at=at,
            updated_at=at,
            **columns,
        )
    )
