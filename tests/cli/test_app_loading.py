"""How the CLI finds the app: --app, SQUIDMESH_APP, the current directory, and every way to fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from squidmesh_sdk.cli import EXIT_USAGE
from squidmesh_sdk.cli.app import (
    APP_ENV_VAR,
    MSG_BAD_SPEC,
    MSG_NO_APP,
    MSG_NO_ATTRIBUTE,
    app_spec,
    one_line,
)
from tests.cli.app import DB_ENV_VAR
from tests.cli.conftest import APP
from tests.cli.support import Cli, assert_one_error_line


def test_no_app_is_a_usage_error(cli: Cli) -> None:
    result = cli("runs", "list")
    assert result.err == f"squidmesh: error: {MSG_NO_APP}\n"
    assert_one_error_line(result, EXIT_USAGE)


def test_a_blank_env_var_counts_as_no_app(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(APP_ENV_VAR, "  ")
    assert_one_error_line(cli("graph", "transfer"), EXIT_USAGE, MSG_NO_APP)


@pytest.mark.parametrize("spec", ["not a spec", "tests.cli.app:", ":client", "1abc:client"])
def test_a_malformed_spec_is_a_usage_error(cli: Cli, spec: str) -> None:
    result = cli("--app", spec, "graph", "transfer")
    if spec == "tests.cli.app:":
        # An empty attribute means the default one, which that module does not have.
        expected = MSG_NO_ATTRIBUTE.format(module="tests.cli.app", attribute="client")
    else:
        expected = MSG_BAD_SPEC.format(spec=spec)
    assert assert_one_error_line(result, EXIT_USAGE) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "tests.cli.nowhere:client",
            "cannot import app module 'tests.cli.nowhere': ModuleNotFoundError: "
            "No module named 'tests.cli.nowhere'",
        ),
        ("tests.cli.app:missing", "app module 'tests.cli.app' has no attribute 'missing'"),
        (
            "tests.cli.app:not_a_client",
            "app 'tests.cli.app:not_a_client' is a int, not a squidmesh_sdk.Client "
            "or a callable returning one",
        ),
        (
            "tests.cli.app:broken_factory",
            "app factory 'tests.cli.app:broken_factory' raised RuntimeError: "
            "no database configured set DATABASE_URL",
        ),
        (
            "tests.cli.app:wrong_factory",
            "app factory 'tests.cli.app:wrong_factory' returned a str, not a squidmesh_sdk.Client",
        ),
        (
            "squidmesh_sdk:Client",
            "app factory 'squidmesh_sdk:Client' raised TypeError: "
            "Client.__init__() missing 2 required positional arguments: 'database' and 'workflows'",
        ),
    ],
)
def test_an_invalid_app_is_one_line_and_exit_2(cli: Cli, spec: str, expected: str) -> None:
    assert assert_one_error_line(cli("--app", spec, "graph", "transfer"), EXIT_USAGE) == expected


def test_an_app_module_that_raises_on_import_is_reported(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cli_broken_app.py").write_text("raise ValueError('bad\\nconfig')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cli_broken_app", raising=False)
    result = cli("--app", "cli_broken_app:client", "graph", "transfer")
    message = assert_one_error_line(result, EXIT_USAGE)
    assert message == "cannot import app module 'cli_broken_app': ValueError: bad config"
    sys.modules.pop("cli_broken_app", None)


def test_the_env_var_names_the_app(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(APP_ENV_VAR, "tests.cli.app:make_client")
    monkeypatch.setenv(DB_ENV_VAR, "sqlite:///unused.db")  # graph never opens the database
    result = cli("graph", "transfer")
    assert result.code == 0, result
    assert result.out.startswith("flowchart TD\n")


def test_app_flag_wins_over_the_env_var_before_or_after_the_command(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(APP_ENV_VAR, "tests.cli.app:not_a_client")
    monkeypatch.setenv(DB_ENV_VAR, "sqlite:///unused.db")
    assert cli("--app", APP, "graph", "transfer").code == 0
    assert cli("graph", "transfer", "--app", APP).code == 0
    assert cli("graph", "transfer").code == EXIT_USAGE


def test_an_instance_in_a_module_of_the_current_directory(
    cli: Cli, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``myapp:client`` from the project root: cwd on sys.path, ``:client`` by default."""
    module = f"cli_instance_app_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(
        "import os\n"
        "from squidmesh_sdk import Client, DatabaseExecutor\n"
        "from tests.cli.app import WORKFLOWS\n"
        "client = Client(os.environ['SQUIDMESH_TEST_APP_DB'], WORKFLOWS,\n"
        "                executor=DatabaseExecutor(), observers=())\n"
    )
    monkeypatch.setenv(DB_ENV_VAR, database_url)
    monkeypatch.chdir(tmp_path)
    try:
        result = cli("--app", module, "runs", "list", "--json")
        assert result.code == 0, result
        assert result.json() == {"next_after": None, "runs": []}
        assert sys.path[0] == str(tmp_path)
    finally:
        sys.modules.pop(module, None)


def test_app_spec_prefers_the_flag() -> None:
    assert app_spec("a:b", {APP_ENV_VAR: "c:d"}) == "a:b"
    assert app_spec(None, {APP_ENV_VAR: " c:d "}) == "c:d"


def test_one_line_flattens_listed_problems() -> None:
    text = "workflow 'w' has 2 problems:\n- [a] first\n- [b] second"
    assert one_line(text) == "workflow 'w' has 2 problems: [a] first; [b] second"
    assert one_line("") == ""


def test_a_worker_whose_app_lacks_a_child_workflow_refuses_to_start(
    database_url: str, tmp_path: Path
) -> None:
    # Such a worker could only fail the child step until its job was dead-lettered, with no
    # word on the run: the real process stops at once instead, saying what to fix.
    root = Path(__file__).parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        DB_ENV_VAR: database_url,
        APP_ENV_VAR: "tests.cli.app:parent_without_child",
    }
    done = subprocess.run(
        [sys.executable, "-m", "squidmesh_sdk.cli", "worker"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_USAGE
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        "squidmesh: error: app factory 'tests.cli.app:parent_without_child' raised "
        "InvalidArgument: workflow 'parent' (version 'fp-"
    )
    assert "child step 'ship' starts workflow 'shipping', which is not in workflows=" in line
