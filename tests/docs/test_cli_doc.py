"""The `squidmesh migrate` sessions shown in docs/cli.md are what the command prints today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from squidmesh_sdk.cli import main
from tests.cli.conftest import use_app
from tests.cli.support import migrated_by_a_newer_release

CLI_DOC = Path(__file__).parents[2] / "docs" / "cli.md"
# Run ids and times vary from run to run; the sessions compare with them masked.
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?")


def sessions(prefix: str) -> list[list[tuple[list[str], str]]]:
    """The ```console blocks whose first command starts with ``prefix``: (argv, output) pairs."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", CLI_DOC.read_text(), flags=re.DOTALL):
        if not block.startswith(f"$ {prefix}"):
            continue
        steps: list[tuple[list[str], str]] = []
        for line in block.splitlines(keepends=True):
            if line.startswith("$ squidmesh "):
                steps.append((line.removeprefix("$ squidmesh ").split(), ""))
            else:
                argv, output = steps[-1]
                steps[-1] = (argv, output + line)
        found.append(steps)
    return found


def normalised(text: str) -> str:
    return TIME.sub("TIME", UUID.sub("ID", text))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    main(argv)
    out, err = capsys.readouterr()
    return out + err


def test_the_migrate_session_on_an_empty_database_is_current(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_app(monkeypatch, empty_database_url)
    (session, newer) = sessions("squidmesh migrate")
    assert len(session) >= 4
    for argv, shown in session:
        assert normalised(run(argv, capsys)) == normalised(shown), argv
    migrated_by_a_newer_release(empty_database_url)
    for argv, shown in newer:
        assert normalised(run(argv, capsys)) == normalised(shown), argv
