"""Where the benchmarks run: a fresh SQLite file or fresh tables on a PostgreSQL server.

Every measurement starts from an empty schema: on SQLite a new file in a temporary directory,
on PostgreSQL the squidmesh and ``raw_*`` tables dropped and created again (and a checkpoint,
so that one measurement does not pay for the previous one's dirty pages).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from squidmesh_sdk.store import schema
from tools.pgserver import PrivateServer

__all__ = ["BUSY_TIMEOUT", "SQLITE_SYNCHRONOUS", "Target", "open_target"]

BUSY_TIMEOUT = 30.0
"""Seconds a SQLite writer waits for the lock: squidmesh's default, used by the raw loop too."""
SQLITE_SYNCHRONOUS = "FULL"
"""``PRAGMA synchronous`` of squidmesh's default, used by the raw loop too."""

RAW_TABLES = ("raw_outputs", "raw_jobs")


@dataclass
class Target:
    """One database to benchmark on.

    Attributes:
        kind: ``sqlite`` or ``postgres``.
        description: What the header says about the database and its durability settings.
        url: PostgreSQL only: the SQLAlchemy URL of the database the benchmark uses.
        directory: SQLite only: where the database files go.
    """

    kind: Literal["sqlite", "postgres"]
    description: str
    url: str | None = None
    directory: Path | None = None
    _counter: int = field(default=0, repr=False)

    def fresh(self) -> str:
        """A SQLAlchemy URL of an empty database for squidmesh (and for the raw tables)."""
        self._counter += 1
        if self.kind == "sqlite":
            assert self.directory is not None  # noqa: S101 - set for SQLite targets
            return f"sqlite+pysqlite:///{self.directory / f'bench_{self._counter}.db'}"
        assert self.url is not None  # noqa: S101 - set for PostgreSQL targets
        _reset_postgres(self.url)
        return self.url

    def raw_connect(self, url: str) -> Any:
        """A DB-API connection for the raw loop, with squidmesh's connection settings.

        SQLite: autocommit mode (the loop sends ``BEGIN IMMEDIATE`` itself), WAL,
        ``synchronous=FULL`` and the busy timeout. PostgreSQL: a plain psycopg connection
        (a transaction starts with the first statement and ends with ``commit()``).
        """
        if self.kind == "sqlite":
            path = sa.make_url(url).database
            assert path is not None  # noqa: S101 - fresh() always names a file
            connection = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            connection.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
            return connection
        import psycopg

        return psycopg.connect(libpq_url(url))


def libpq_url(url: str) -> str:
    """The libpq form (``postgresql://...``) of a SQLAlchemy PostgreSQL URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _reset_postgres(url: str) -> None:
    """Drop the squidmesh and raw tables of the database, then checkpoint (when allowed)."""
    names = [table.name for table in reversed(schema.metadata.sorted_tables)]
    engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for name in [*names, *RAW_TABLES]:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
            with contextlib.suppress(DBAPIError):  # CHECKPOINT needs a privileged role
                connection.execute(sa.text("CHECKPOINT"))
    finally:
        engine.dispose()


def _postgres_settings(url: str) -> tuple[str, str, str]:
    """The server's version, ``fsync`` and ``synchronous_commit``."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            version = str(connection.scalar(sa.text("SHOW server_version")))
            fsync = str(connection.scalar(sa.text("SHOW fsync")))
            synchronous_commit = str(connection.scalar(sa.text("SHOW synchronous_commit")))
            return version.split()[0], fsync, synchronous_commit
    finally:
        engine.dispose()


@contextlib.contextmanager
def open_target(kind: str, postgres_url: str | None = None) -> Iterator[Target]:
    """The target for ``--db kind``; everything it started or created is removed on exit.

    For PostgreSQL without ``postgres_url`` a private server is started with durable settings
    (``fsync=on``, ``synchronous_commit=on``) and destroyed at the end.
    """
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="squidmesh-bench-") as directory:
            yield Target(
                kind="sqlite",
                description=(
                    f"SQLite {sqlite3.sqlite_version}, WAL, synchronous={SQLITE_SYNCHRONOUS} "
                    f"(durable), a new file per measurement in {directory}"
                ),
                directory=Path(directory),
            )
        return
    if kind != "postgres":
        raise ValueError(f"unknown database {kind!r}")
    if postgres_url is not None:
        version, fsync, synchronous_commit = _postgres_settings(postgres_url)
        durable = "durable" if fsync == "on" and synchronous_commit == "on" else "NOT durable"
        rendered = sa.make_url(postgres_url).render_as_string(hide_password=True)
        yield Target(
            kind="postgres",
            description=(
                f"PostgreSQL {version} at {rendered}: fsync={fsync}, "
                f"synchronous_commit={synchronous_commit} ({durable}); "
                "tables dropped and recreated per measurement"
            ),
            url=postgres_url,
        )
        return
    server = PrivateServer(durable=True)
    try:
        server.start()
        version, fsync, synchronous_commit = _postgres_settings(server.url)
        yield Target(
            kind="postgres",
            description=(
                f"PostgreSQL {version}, private server started for this run on port "
                f"{server.port} with durable settings: fsync={fsync}, "
                f"synchronous_commit={synchronous_commit}; destroyed at the end"
            ),
            url=server.url,
        )
    finally:
        server.destroy()


def cpu_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
