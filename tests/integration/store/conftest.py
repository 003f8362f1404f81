"""Fixtures of the store tests: a Database on the test's own migrated database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from squidmesh_sdk.store.database import Database


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A Database on ``database_url`` (SQLite and PostgreSQL), disposed after the test."""
    database = Database(database_url)
    try:
        yield database
    finally:
        database.dispose()
