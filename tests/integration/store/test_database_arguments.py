"""``Database`` (and so ``Client``) names what is wrong with its target and settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from squidmesh_sdk import Client, Database, InvalidArgument

NOT_A_URL = "is not a database URL: use sqlite:///path/to/app.db or postgresql+psycopg://"


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (":memory:", NOT_A_URL),  # was SQLAlchemy's "Could not parse SQLAlchemy URL"
        ("app.db", NOT_A_URL),
        ("sqlite://", "an in-memory SQLite database cannot be shared"),
        ("sqlite:///:memory:", "an in-memory SQLite database cannot be shared"),
        ("mysql://user@host/db", "SQLite or PostgreSQL, not 'mysql'"),  # was ModuleNotFoundError
        ("foo://x", "SQLite or PostgreSQL, not 'foo'"),  # was NoSuchModuleError
        ("postgresql+nosuchdriver://user@host/db", "cannot load the driver"),
    ],
)
def test_a_target_that_is_not_a_usable_database_url_is_refused(target: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(says)) as refused:
        Database(target)
    assert refused.value.argument == "database"
    with pytest.raises(InvalidArgument, match=re.escape(says)):
        Client(target, [])


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"sqlite_synchronous": "normal"}, "sqlite_synchronous"),  # PRAGMA values are upper case
        ({"busy_timeout": -1}, "busy_timeout"),  # was PRAGMA busy_timeout=0: no waiting
        ({"busy_timeout": 1e20}, "busy_timeout"),
        ({"busy_timeout": float("nan")}, "busy_timeout"),  # failed at the first connection
        ({"busy_timeout": "30"}, "busy_timeout"),
        ({"busy_timeout": None}, "busy_timeout"),
    ],
)
def test_bad_settings_are_refused_by_name(
    tmp_path: Path, settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        Database(f"sqlite:///{tmp_path}/app.db", **settings)
    assert refused.value.argument == named
    assert not (tmp_path / "app.db").exists()
