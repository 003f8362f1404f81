"""The database fixtures hand every test a working database of its own.

``database_url`` is migrated to the current schema; ``empty_database_url`` is not.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from squidmesh_sdk.store import schema
from tests import pg

SQUIDMESH_TABLES = sorted(schema.metadata.tables)


def _table_names(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_url_connects(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT 1")) == 1
    finally:
        engine.dispose()


# Run twice per backend: whichever run comes second finds the table the first one created,
# unless every test really gets a database of its own.
@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_starts_with_an_empty_database(empty_database_url: str, attempt: int) -> None:
    assert _table_names(empty_database_url) == []
    _leave_a_table(empty_database_url, attempt)
    assert _table_names(empty_database_url) == ["leftover"]


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_starts_with_exactly_the_migrated_schema(database_url: str, attempt: int) -> None:
    assert sorted(_table_names(database_url)) == SQUIDMESH_TABLES
    _leave_a_table(database_url, attempt)
    assert "leftover" in _table_names(database_url)


def _leave_a_table(url: str, attempt: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE leftover (id INTEGER PRIMARY KEY)"))
            connection.execute(sa.text("INSERT INTO leftover (id) VALUES (:id)"), {"id": attempt})
    finally:
        engine.dispose()


def test_database_is_private_to_the_test(empty_database_url: str, tmp_path: Path) -> None:
    database_url = empty_database_url
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.drivername == "sqlite+pysqlite"
        assert url.database is not None
        path = Path(url.database)
        assert path.parent == tmp_path
        assert not path.exists(), "the SQLite file must be new: nothing has connected yet"
        assert _table_names(database_url) == []
        assert path.exists()
    else:
        assert url.drivername == "postgresql+psycopg"
        engine = sa.create_engine(database_url)
        try:
            with engine.connect() as connection:
                name = connection.scalar(sa.text("SELECT current_database()"))
        finally:
            engine.dispose()
        assert name == url.database
        assert name not in {"postgres", "template0", "template1", pg.template_name()}
        assert isinstance(name, str)
        assert name.startswith("e_")


@pytest.mark.postgres
def test_cloned_databases_are_dropped_again(
    postgres_server_url: sa.URL, postgres_template: sa.URL
) -> None:
    # No database_url is in use now, so every clone made so far (by the postgres variants of the
    # tests above, when they ran first) must have been dropped by the fixture's teardown.
    assert pg.existing_databases(postgres_server_url, pg.created_clones) == []
    # What the fixture does around each test, checked from the outside.
    assert postgres_template.database == pg.template_name()
    assert pg.database_exists(postgres_server_url, pg.template_name())
    clone = pg.clone_template(postgres_server_url)
    assert clone.database is not None
    assert pg.database_exists(postgres_server_url, clone.database)
    pg.drop_database(postgres_server_url, clone.database)
    assert not pg.database_exists(postgres_server_url, clone.database)
