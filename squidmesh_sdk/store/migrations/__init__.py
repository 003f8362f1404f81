"""Versioned schema migrations owned by the library.

Each migration is a pair of SQL files, ``NNNN_slug.sqlite.sql`` and ``NNNN_slug.postgresql.sql``,
applied in order inside one transaction. Applied versions are recorded in
``squidmesh_migrations``. On PostgreSQL a transaction-scoped advisory lock makes concurrent
``migrate()`` calls (several workers starting at once) queue instead of racing; on SQLite the
``BEGIN IMMEDIATE`` write lock does the same.

Hosts that manage their schema with their own tool can print the SQL with :func:`sql` (or
``squidmesh migrate --print-sql``) and apply it themselves; they must then also insert the
version rows the printed script contains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

from squidmesh_sdk import errors
from squidmesh_sdk.store import schema
from squidmesh_sdk.store.database import Database

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "current_version",
    "migrate",
    "require_latest",
    "sql",
]

# An arbitrary constant shared by every squidmesh process: "SQMH" in ASCII.
ADVISORY_LOCK_KEY = 0x53514D48

_FILE = re.compile(
    r"^(?P<version>\d{4})_(?P<slug>[a-z0-9_]+)\.(?P<dialect>sqlite|postgresql)\.sql$"
)
_DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change.

    Attributes:
        version: Its number, from 1, without gaps.
        name: Its slug, such as ``"initial"``.
    """

    version: int
    name: str

    def script(self, dialect: str) -> str:
        """The migration's SQL for ``dialect`` (``"sqlite"`` or ``"postgresql"``)."""
        if dialect not in _DIALECTS:
            raise ValueError(f"squidmesh supports sqlite and postgresql, not {dialect!r}")
        filename = f"{self.version:04d}_{self.name}.{dialect}.sql"
        return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")

    def statements(self, dialect: str) -> list[str]:
        """The script split into single statements, comments removed."""
        lines = [line for line in self.script(dialect).splitlines() if not line.startswith("--")]
        return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


@cache
def _discover() -> tuple[Migration, ...]:
    found: dict[int, set[str]] = {}
    names: dict[int, str] = {}
    for entry in resources.files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        version = int(match["version"])
        if names.setdefault(version, match["slug"]) != match["slug"]:
            raise RuntimeError(f"two migrations share version {version}")
        found.setdefault(version, set()).add(match["dialect"])
    for version, dialects in found.items():
        if dialects != set(_DIALECTS):
            raise RuntimeError(
                f"migration {version} lacks a script for {set(_DIALECTS) - dialects}"
            )
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration versions must run 1..n without gaps, found {versions}")
    return tuple(Migration(version, names[version]) for version in versions)


MIGRATIONS: tuple[Migration, ...] = _discover()
"""Every migration, in order."""

LATEST_VERSION: int = MIGRATIONS[-1].version
"""The schema version this library needs."""


def current_version(connection: Connection) -> int:
    """The highest applied migration version, or 0 when the database was never migrated."""
    if not sa.inspect(connection).has_table(schema.migrations.name):
        return 0
    return int(connection.scalar(sa.select(sa.func.max(schema.migrations.c.version))) or 0)


def migrate(database: Database, now: datetime) -> list[int]:
    """Apply every pending migration in one transaction; return the versions applied.

    Safe to call from many processes at once: they serialise, and the later ones find
    nothing left to do.

    Raises:
        SchemaTooNew: a newer release already migrated the database past this library's
            version; nothing is written.
    """
    with database.transaction(now) as tx:
        connection = tx.connection
        if database.dialect == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
        schema.migrations.create(connection, checkfirst=True)
        current = current_version(connection)
        if current > LATEST_VERSION:
            raise errors.SchemaTooNew(current, LATEST_VERSION)
        applied = []
        for migration in MIGRATIONS[current:]:
            for statement in migration.statements(database.dialect):
                connection.exec_driver_sql(statement)
            connection.execute(
                schema.migrations.insert().values(
                    version=migration.version, name=migration.name, applied_at=now
                )
            )
            applied.append(migration.version)
        return applied


def sql(dialect: str, *, after: int = 0) -> str:
    """The SQL that brings a database from version ``after`` to the latest, as one script.

    It creates the version table when ``after`` is 0 and records each version it applies.
    """
    if dialect not in _DIALECTS:
        raise ValueError(f"squidmesh supports sqlite and postgresql, not {dialect!r}")
    compiler_dialect: Dialect = (
        postgresql.dialect() if dialect == "postgresql" else sqlite.dialect()  # type: ignore[no-untyped-call]
    )
    parts: list[str] = []
    if after == 0:
        ddl = sa.schema.CreateTable(schema.migrations, if_not_exists=True)
        parts.append(str(ddl.compile(dialect=compiler_dialect)).strip() + ";")
    for migration in MIGRATIONS[after:]:
        parts.append(f"-- {migration.version:04d}_{migration.name}")
        parts.extend(f"{statement};" for statement in migration.statements(dialect))
        parts.append(
            # Version and slug come from the package's own file names, never from input.
            "INSERT INTO squidmesh_migrations (version, name, applied_at) "  # noqa: S608
            f"VALUES ({migration.version}, '{migration.name}', CURRENT_TIMESTAMP);"
        )
    return "\n\n".join(parts) + "\n"


def require_latest(connection: Connection) -> None:
    """Raise unless the schema is at exactly this library's version.

    Raises:
        SchemaNotReady: the schema is missing or older (run ``squidmesh migrate``).
        SchemaTooNew: a newer release migrated it further (upgrade squidmesh_sdk).
    """
    version = current_version(connection)
    if version < LATEST_VERSION:
        raise errors.SchemaNotReady(version, LATEST_VERSION)
    if version > LATEST_VERSION:
        raise errors.SchemaTooNew(version, LATEST_VERSION)
