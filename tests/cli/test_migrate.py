"""squidmesh migrate: apply, --check, --print-sql."""

from __future__ import annotations

import pytest

from squidmesh_sdk.cli import EXIT_FAILURE, EXIT_USAGE
from squidmesh_sdk.cli.app import MSG_NO_APP
from squidmesh_sdk.cli.commands import (
    MSG_DIALECT_NEEDS_PRINT_SQL,
    MSG_JSON_WITH_PRINT_SQL,
    MSG_SCHEMA_BEHIND,
    MSG_SCHEMA_NEWER,
)
from squidmesh_sdk.store import migrations
from squidmesh_sdk.store.database import Database
from tests.cli.conftest import use_app
from tests.cli.support import (
    Cli,
    assert_one_error_line,
    migrated_by_a_newer_release,
    stable_json,
)

LATEST = migrations.LATEST_VERSION


@pytest.fixture
def empty_app(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    use_app(monkeypatch, empty_database_url)
    return empty_database_url


def test_check_fails_then_migrate_applies_then_check_passes(cli: Cli, empty_app: str) -> None:
    behind = cli("migrate", "--check")
    message = assert_one_error_line(behind, EXIT_FAILURE)
    assert message == MSG_SCHEMA_BEHIND.format(current=0, latest=LATEST)

    applied = cli("migrate")
    assert applied.code == 0, applied
    versions = ", ".join(str(v) for v in range(1, LATEST + 1))
    assert (
        applied.out
        == f"applied migrations {versions}; the squidmesh schema is at version {LATEST}\n"
    )
    assert applied.err == ""

    again = cli("migrate")
    assert again.out == f"nothing to apply; the squidmesh schema is at version {LATEST}\n"

    check = cli("migrate", "--check")
    assert (check.code, check.out, check.err) == (
        0,
        f"the squidmesh schema is current (version {LATEST})\n",
        "",
    )


def test_migrate_json(cli: Cli, empty_app: str) -> None:
    behind = cli("migrate", "--check", "--json")
    assert behind.code == EXIT_FAILURE
    assert stable_json(behind.out) == {
        "current_version": 0,
        "latest_version": LATEST,
        "up_to_date": False,
    }
    assert behind.err == f"squidmesh: error: {MSG_SCHEMA_BEHIND.format(current=0, latest=LATEST)}\n"

    applied = cli("migrate", "--json")
    assert stable_json(applied.out) == {
        "applied": list(range(1, LATEST + 1)),
        "current_version": LATEST,
    }
    assert stable_json(cli("migrate", "--json").out) == {"applied": [], "current_version": LATEST}
    current = cli("migrate", "--check", "--json")
    assert current.code == 0
    assert stable_json(current.out)["up_to_date"] is True


def test_check_refuses_a_schema_newer_than_the_library(cli: Cli, app_db: str) -> None:
    migrated_by_a_newer_release(app_db)
    message = assert_one_error_line(cli("migrate", "--check"), EXIT_FAILURE)
    assert message == MSG_SCHEMA_NEWER.format(current=LATEST + 1, latest=LATEST)


def test_migrate_and_other_commands_refuse_a_schema_newer_than_the_library(
    cli: Cli, app_db: str
) -> None:
    migrated_by_a_newer_release(app_db)
    expected = MSG_SCHEMA_NEWER.format(current=LATEST + 1, latest=LATEST)
    assert f"version {LATEST + 1}" in expected
    assert f"library's {LATEST}" in expected
    assert assert_one_error_line(cli("migrate"), EXIT_FAILURE) == expected
    assert assert_one_error_line(cli("migrate", "--json"), EXIT_FAILURE) == expected
    assert assert_one_error_line(cli("runs", "list"), EXIT_FAILURE) == expected
    database = Database(app_db)
    try:
        with database.read() as connection:
            assert migrations.current_version(connection) == LATEST + 1
    finally:
        database.dispose()


def test_other_commands_on_an_unmigrated_database_say_to_migrate(cli: Cli, empty_app: str) -> None:
    message = assert_one_error_line(cli("runs", "list"), EXIT_FAILURE)
    assert message.startswith(f"the squidmesh schema is at version 0, this library needs {LATEST}")
    assert "squidmesh migrate" in message


def test_print_sql_defaults_to_the_app_database_dialect(cli: Cli, empty_app: str) -> None:
    dialect = "sqlite" if empty_app.startswith("sqlite") else "postgresql"
    result = cli("migrate", "--print-sql")
    assert (result.code, result.err) == (0, "")
    assert result.out == migrations.sql(dialect)
    # Printing applies nothing.
    assert cli("migrate", "--check").code == EXIT_FAILURE


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_print_sql_with_a_dialect_needs_no_app(cli: Cli, dialect: str) -> None:
    result = cli("migrate", "--print-sql", "--dialect", dialect)
    assert (result.code, result.err) == (0, "")
    assert result.out == migrations.sql(dialect)


def test_print_sql_without_dialect_or_app(cli: Cli) -> None:
    assert assert_one_error_line(cli("migrate", "--print-sql"), EXIT_USAGE) == MSG_NO_APP


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["migrate", "--dialect", "sqlite"], MSG_DIALECT_NEEDS_PRINT_SQL),
        (["migrate", "--print-sql", "--dialect", "sqlite", "--json"], MSG_JSON_WITH_PRINT_SQL),
        (["migrate", "--print-sql", "--check"], "not allowed with argument"),
        (["migrate", "--print-sql", "--dialect", "mysql"], "invalid choice: 'mysql'"),
    ],
)
def test_migrate_usage_errors(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str
) -> None:
    use_app(monkeypatch, "sqlite:///unused.db")
    assert_one_error_line(cli(*argv), EXIT_USAGE, expected)
