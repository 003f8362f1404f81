"""Fixtures of the CLI tests: an isolated environment, the app on this test's database."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from squidmesh_sdk import Client
from squidmesh_sdk.cli import main
from squidmesh_sdk.cli.app import APP_ENV_VAR
from tests.cli.app import DB_ENV_VAR, make_client
from tests.cli.support import Cli, Result

APP = "tests.cli.app:make_client"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No app from the caller's shell; ``sys.path`` restored (the CLI adds the cwd)."""
    monkeypatch.delenv(APP_ENV_VAR, raising=False)
    monkeypatch.delenv(DB_ENV_VAR, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


def use_app(monkeypatch: pytest.MonkeyPatch, database_url: str, app: str = APP) -> None:
    """Point ``SQUIDMESH_APP`` at the test app, on ``database_url``."""
    monkeypatch.setenv(DB_ENV_VAR, database_url)
    monkeypatch.setenv(APP_ENV_VAR, app)


@pytest.fixture
def app_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's migrated database, with ``SQUIDMESH_APP`` pointing at the test app."""
    use_app(monkeypatch, database_url)
    return database_url


@pytest.fixture
def client(app_db: str) -> Iterator[Client]:
    """A client of the test app, for setting up runs and driving the queue."""
    with make_client() as test_client:
        yield test_client


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``squidmesh`` in-process: ``cli("runs", "list")`` returns code, stdout, stderr."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run
