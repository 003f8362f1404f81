"""Throwaway PostgreSQL databases for the test suite.

``scripts/test`` starts a server and exports its URL in ``SQUIDMESH_TEST_POSTGRES_URL``. Once per
session a template database is (re)created there; every test then gets its own database cloned
from that template, dropped again when the test ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

ENV_VAR = "SQUIDMESH_TEST_POSTGRES_URL"
TEMPLATE_NAME = "squidmesh_template"

# Every database clone_template() made in this process, so tests can check they were dropped.
created_clones: list[str] = []

MISSING_SERVER_MESSAGE = (
    f"{ENV_VAR} is not set, so the PostgreSQL variant of this test cannot run. "
    "Run the suite with ./scripts/test (it starts a throwaway server), "
    f"set {ENV_VAR}=postgresql+psycopg://user@host:port/postgres, "
    "or deselect these tests with -m 'not postgres'."
)


def server_url() -> URL | None:
    """The URL of the test server's maintenance database, or None when none is configured."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    url = sa.make_url(raw)
    if url.drivername == "postgresql":
        # A bare postgresql:// would make SQLAlchemy look for psycopg2, which we do not ship.
        url = url.set(drivername="postgresql+psycopg")
    return url


def template_name() -> str:
    """Name of this session's template database.

    Every test session (a pytest-xdist worker, or another checkout's run against the same
    server) gets its own template, named after its process, so that none drops another's.
    """
    return f"{TEMPLATE_NAME}_{os.getpid()}"


def render(url: URL) -> str:
    """The URL as a string a test can pass to ``create_engine``, password included."""
    return url.render_as_string(hide_password=False)


@contextmanager
def _admin_engine(server: URL) -> Iterator[Engine]:
    # CREATE / DROP DATABASE cannot run inside a transaction, hence AUTOCOMMIT. NullPool keeps
    # no connection open afterwards (an open one would block cloning or dropping a database).
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _execute(server: URL, *statements: str) -> None:
    with _admin_engine(server) as engine, engine.connect() as connection:
        for statement in statements:
            connection.execute(sa.text(statement))


def recreate_template(server: URL) -> URL:
    """Drop the session's template database if a previous run left it, create it empty."""
    name = template_name()
    _execute(
        server,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        # template0, not template1: a shared server's template1 may have been customised.
        f'CREATE DATABASE "{name}" TEMPLATE template0',
    )
    return server.set(database=name)


def drop_template(server: URL) -> None:
    """Drop the session's template database."""
    _execute(server, f'DROP DATABASE IF EXISTS "{template_name()}" WITH (FORCE)')


def clone_template(server: URL) -> URL:
    """Create a new database ``t_<uuid hex>`` from the template; return its URL.

    Cloning fails while anyone is connected to the template, so whoever prepares the template
    must close (dispose) its connections first.
    """
    name = f"t_{uuid.uuid4().hex}"
    _execute(server, f'CREATE DATABASE "{name}" TEMPLATE "{template_name()}"')
    created_clones.append(name)
    return server.set(database=name)


def create_empty_database(server: URL) -> URL:
    """Create a new, empty database ``e_<uuid hex>``; return its URL."""
    name = f"e_{uuid.uuid4().hex}"
    _execute(server, f'CREATE DATABASE "{name}" TEMPLATE template0')
    created_clones.append(name)
    return server.set(database=name)


def drop_database(server: URL, name: str) -> None:
    """Drop a database, ending any session a test left connected to it."""
    _execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def existing_databases(server: URL, names: list[str]) -> list[str]:
    """Those of the given databases that exist on the server."""
    with _admin_engine(server) as engine, engine.connect() as connection:
        found = connection.scalars(
            sa.text("SELECT datname FROM pg_database WHERE datname = ANY(:names)"),
            {"names": names},
        )
        return sorted(found)


def database_exists(server: URL, name: str) -> bool:
    """Whether the server has a database of that name."""
    return existing_databases(server, [name]) == [name]
