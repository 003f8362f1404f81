"""squidmesh worker: its settings, its refusals, and a real worker process stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from squidmesh_sdk import Client, Worker
from squidmesh_sdk.cli import EXIT_FAILURE, EXIT_USAGE, commands
from squidmesh_sdk.cli.commands import MSG_SCHEMA_NEWER, MSG_WORKER_NEEDS_DATABASE_EXECUTOR
from squidmesh_sdk.store import migrations
from tests.cli.app import DB_ENV_VAR
from tests.cli.conftest import APP, use_app
from tests.cli.support import Cli, assert_one_error_line, migrated_by_a_newer_release

ROOT = Path(__file__).parents[2]
SCRIPT = Path(sys.executable).parent / "squidmesh"


class RecordingWorker(Worker):
    """Records how it was built and run instead of running."""

    built: ClassVar[list[RecordingWorker]] = []

    def run(self, *, install_signal_handlers: bool = False) -> None:
        self.installed_signal_handlers = install_signal_handlers
        RecordingWorker.built.append(self)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[RecordingWorker]:
    RecordingWorker.built = []
    monkeypatch.setattr(commands, "Worker", RecordingWorker)
    return RecordingWorker.built


def test_worker_defaults(cli: Cli, app_db: str, recorded: list[RecordingWorker]) -> None:
    result = cli("worker")
    assert (result.code, result.out) == (0, "")
    (worker,) = recorded
    assert worker.installed_signal_handlers is True
    assert worker.queues == ("default",)  # the executor's queue
    assert (worker.concurrency, worker.lease, worker.poll_interval) == (4, 30.0, 1.0)


def test_worker_settings(cli: Cli, app_db: str, recorded: list[RecordingWorker]) -> None:
    result = cli(
        "worker", "--queue", "mail", "--queue", "billing", "--concurrency", "8",
        "--lease", "12.5", "--poll-interval", "0.25", "--log-level", "DEBUG",
    )  # fmt: skip
    assert result.code == 0, result
    (worker,) = recorded
    assert worker.queues == ("mail", "billing")
    assert (worker.concurrency, worker.lease, worker.poll_interval) == (8, 12.5, 0.25)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--concurrency", "0"], "argument --concurrency: '0' is not a positive integer"),
        (["--lease", "-1"], "argument --lease: '-1' is not a positive number"),
        (["--poll-interval", "nan"], "argument --poll-interval: 'nan' is not a positive number"),
        (["--lease", "inf"], "argument --lease: 'inf' is not a positive number"),
        (["--log-level", "LOUD"], "argument --log-level: invalid choice: 'LOUD'"),
        (["--queue", " "], "argument --queue: a queue name cannot be blank"),
    ],
)
def test_worker_usage_errors(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str
) -> None:
    use_app(monkeypatch, "sqlite:///unused.db")
    message = assert_one_error_line(cli("worker", *argv), EXIT_USAGE)
    assert message.startswith(f"worker: {expected}")


def test_worker_needs_the_database_executor(
    cli: Cli, database_url: str, monkeypatch: pytest.MonkeyPatch, recorded: list[RecordingWorker]
) -> None:
    use_app(monkeypatch, database_url, "tests.cli.app:inline_client")
    message = assert_one_error_line(cli("worker"), EXIT_USAGE)
    assert message == MSG_WORKER_NEEDS_DATABASE_EXECUTOR.format(executor="InlineExecutor")
    assert recorded == []


def test_worker_refuses_an_unmigrated_database(
    cli: Cli,
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    recorded: list[RecordingWorker],
) -> None:
    use_app(monkeypatch, empty_database_url)
    assert_one_error_line(cli("worker"), EXIT_FAILURE, "run `squidmesh migrate`")
    assert recorded == []


def test_worker_refuses_a_schema_newer_than_the_library(
    cli: Cli, app_db: str, recorded: list[RecordingWorker]
) -> None:
    migrated_by_a_newer_release(app_db)
    message = assert_one_error_line(cli("worker"), EXIT_FAILURE)
    latest = migrations.LATEST_VERSION
    assert message == MSG_SCHEMA_NEWER.format(current=latest + 1, latest=latest)
    assert recorded == []


def test_a_worker_process_runs_jobs_and_stops_on_sigterm(client: Client, app_db: str) -> None:
    """The installed script, started from the project root, as an operator would run it.

    The app module is found because the CLI puts the working directory on ``sys.path``.
    """
    env = {**os.environ, "SQUIDMESH_APP": APP, DB_ENV_VAR: app_db}
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [str(SCRIPT), "worker", "--poll-interval", "0.1", "--lease", "5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run = client.start_run("transfer")
        deadline = time.monotonic() + 60
        while client.inspect_run(run.id).status != "completed":
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the worker did not complete the run"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == ""
    assert "squidmesh worker " in err
    assert "\n  queues       default\n" in err
    assert "\n  workflow     transfer (versions: fp-" in err
    assert f"transfer {run.id[:8]}  send_money#1          started" in err
    assert f"transfer {run.id[:8]}                        run completed" in err
    assert "worker stopped" in err
    assert "Traceback" not in err
