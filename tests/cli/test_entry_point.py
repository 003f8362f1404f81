"""The top level: help, version, usage errors, and the installed ``squidmesh`` script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from squidmesh_sdk import __version__
from squidmesh_sdk.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, commands, main
from tests.cli.conftest import use_app
from tests.cli.support import Cli, Result, assert_one_error_line

ROOT = Path(__file__).parents[2]
SCRIPT = Path(sys.executable).parent / "squidmesh"


def test_help_documents_the_app_and_exit_codes(cli: Cli) -> None:
    result = cli("--help")
    assert (result.code, result.err) == (0, "")
    assert "--app module.path:attribute" in result.out
    assert "SQUIDMESH_APP" in result.out
    assert "exit codes:" in result.out
    for command in ("migrate", "worker", "runs", "graph"):
        assert f"    {command} " in result.out


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["worker"],
        ["runs"],
        ["runs", "list"],
        ["runs", "show"],
        ["runs", "explain"],
        ["runs", "approve"],
        ["runs", "reject"],
        ["runs", "unblock"],
        ["runs", "cancel"],
        ["runs", "replay"],
        ["runs", "start"],
        ["graph"],
    ],
)
def test_every_command_has_help(cli: Cli, command: list[str]) -> None:
    result = cli(*command, "--help")
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(f"usage: squidmesh {' '.join(command)}")


def test_version(cli: Cli) -> None:
    assert cli("--version").out == f"squidmesh {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: COMMAND (see 'squidmesh --help')"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (["runs"], "runs: the following arguments are required: ACTION"),
        (["runs", "list", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line(cli: Cli, argv: list[str], expected: str) -> None:
    assert_one_error_line(cli(*argv), EXIT_USAGE, expected)


def test_the_installed_script_runs() -> None:
    assert SCRIPT.exists(), "run `.venv/bin/pip install -e .` to install the squidmesh script"
    result = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: squidmesh ")


def test_python_dash_m_reports_errors_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "squidmesh_sdk.cli", "runs", "show", "not-a-uuid"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    assert result.stderr.startswith("squidmesh: error: runs show: argument RUN_ID:")
    assert result.stderr.count("\n") == 1


def test_main_reads_sys_argv_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["squidmesh", "--version"])
    assert main() == 0
    assert capsys.readouterr().out == f"squidmesh {__version__}\n"


def test_a_database_error_is_one_line(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_app(monkeypatch, f"sqlite:///{tmp_path}/missing/dir/app.db")
    message = assert_one_error_line(cli("runs", "list"), EXIT_FAILURE)
    assert message == "database error: (sqlite3.OperationalError) unable to open database file"


def test_ctrl_c_exits_130_quietly(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    use_app(monkeypatch, "sqlite:///unused.db")

    def interrupted(*_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "graph", interrupted)
    assert cli("graph", "transfer") == Result(EXIT_INTERRUPTED, "", "")


def test_a_closed_pipe_exits_quietly(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    use_app(monkeypatch, "sqlite:///unused.db")

    def closed(*_args: object) -> int:
        raise BrokenPipeError

    monkeypatch.setattr(commands, "graph", closed)
    assert cli("graph", "transfer") == Result(EXIT_FAILURE, "", "")
