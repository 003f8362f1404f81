"""Fixtures shared by the whole test suite.

``database_url`` runs a test once on SQLite and once on PostgreSQL, each time on a database of
its own, migrated to the current schema (``empty_database_url``: the same, never migrated).
The PostgreSQL variant carries the ``postgres`` marker and needs the server that
``./scripts/test`` starts (``SQUIDMESH_TEST_POSTGRES_URL``); without it those tests fail, they
are not skipped, unless deselected with ``-m "not postgres"``.

Tests must dispose the engines they create: warnings are errors in this suite, and an unclosed
SQLite connection raises a ResourceWarning.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from squidmesh_sdk.store import migrations
from squidmesh_sdk.store.database import Database
from tests import pg
from tools.pgserver import PrivateServer
from tools.redisserver import RedisServer


def _prepare_template(engine_url: str) -> None:
    """Bring the freshly created, empty template database to the state every test starts in.

    Called once per session, before any test database is cloned from the template, with the
    template's own URL. It must close its connections before returning, because PostgreSQL
    refuses to clone a database that has sessions open.
    """
    database = Database(engine_url)
    try:
        migrations.migrate(database, datetime.now(UTC))
    finally:
        database.dispose()


def _migrate_sqlite(url: str) -> None:
    database = Database(url)
    try:
        migrations.migrate(database, datetime.now(UTC))
    finally:
        database.dispose()


@pytest.fixture(scope="session")
def postgres_server_url() -> URL:
    """URL of the test server's maintenance database; fails the test when none is configured."""
    url = pg.server_url()
    if url is None:
        pytest.fail(pg.MISSING_SERVER_MESSAGE, pytrace=False)
    return url


@pytest.fixture(scope="session")
def postgres_template(postgres_server_url: URL) -> Iterator[URL]:
    """The session's template database, created and prepared once, dropped at the end."""
    template = pg.recreate_template(postgres_server_url)
    _prepare_template(pg.render(template))
    yield template
    pg.drop_template(postgres_server_url)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a migrated database that belongs to this test alone."""
    backend: str = request.param
    if backend == "sqlite":
        url = f"sqlite+pysqlite:///{tmp_path}/squidmesh.db"
        _migrate_sqlite(url)
        yield url
        return
    # Looked up here, not declared as an argument, so that SQLite-only runs never need a server.
    server: URL = request.getfixturevalue("postgres_server_url")
    request.getfixturevalue("postgres_template")
    database = pg.clone_template(server)
    try:
        yield pg.render(database)
    finally:
        assert database.database is not None
        pg.drop_database(server, database.database)


@pytest.fixture
def postgres_database_url(postgres_server_url: URL, postgres_template: URL) -> Iterator[str]:
    """``database_url`` for tests of PostgreSQL alone (mark them ``postgres``)."""
    database = pg.clone_template(postgres_server_url)
    try:
        yield pg.render(database)
    finally:
        assert database.database is not None
        pg.drop_database(postgres_server_url, database.database)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of an empty, never migrated database that belongs to this test alone."""
    if request.param == "sqlite":
        # The file does not exist yet: the first connection creates it.
        yield f"sqlite+pysqlite:///{tmp_path}/empty.db"
        return
    server: URL = request.getfixturevalue("postgres_server_url")
    database = pg.create_empty_database(server)
    try:
        yield pg.render(database)
    finally:
        assert database.database is not None
        pg.drop_database(server, database.database)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A Redis server of this test's own (a Celery broker the test may stop and restart)."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    """A PostgreSQL server of this test's own (one the test may stop and restart)."""
    server = PrivateServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()
