"""Helpers for the CLI tests: run ``main`` in-process and drive the database queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from squidmesh_sdk import Client
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import migrations
from squidmesh_sdk.store.database import Database

WORKER = "cli-tests"


@dataclass(frozen=True)
class Result:
    """What one ``main(argv)`` call returned and printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


def drain(client: Client, *, queues: tuple[str, ...] = ("default",)) -> int:
    """Perform every due job of the database queue, as a worker would, until none is due.

    Delayed jobs (waits, retry backoff) are not due and stay queued.
    """
    performed = 0
    while True:
        with client.runtime.transaction() as tx:
            claimed = claim_store.claim(tx, worker=WORKER, queues=queues, limit=10, lease=60)
        if not claimed:
            return performed
        for job in claimed:
            client.perform(job.payload)
            with client.runtime.transaction() as tx:
                job_store.complete(tx, job.id, worker=WORKER)
            performed += 1
        assert performed < 100, "the queue does not drain"


def assert_one_error_line(result: Result, code: int, contains: str = "") -> str:
    """The command failed with ``code`` and exactly one ``squidmesh: error:`` line."""
    assert result.code == code, result
    assert result.out == ""
    assert result.err.startswith("squidmesh: error: "), result.err
    assert result.err.endswith("\n")
    assert result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    message = result.err.removeprefix("squidmesh: error: ").rstrip("\n")
    assert contains in message, message
    return message


def stable_json(text: str) -> Any:
    """Parse ``text`` and check it is in the CLI's stable form (sorted keys, indent 2)."""
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return data


def migrated_by_a_newer_release(url: str) -> None:
    """Record a migration this library does not know, as a newer release would have."""
    database = Database(url)
    try:
        with database.transaction(datetime.now(UTC)) as tx:
            tx.connection.execute(
                sa.text(
                    "INSERT INTO squidmesh_migrations (version, name, applied_at) "
                    "VALUES (:version, 'future', :now)"
                ),
                {"version": migrations.LATEST_VERSION + 1, "now": tx.now},
            )
    finally:
        database.dispose()


ROOT = Path(__file__).parents[2]
SCRIPT = Path(sys.executable).parent / "squidmesh"


def worker_process(env: dict[str, str], until: Callable[[], bool], *args: str) -> str:
    """Run ``squidmesh worker`` as an operator would, until ``until()``; SIGTERM; its stderr.

    The installed script, started from the project root with ``env`` added to this
    environment (the app is found because the CLI puts the working directory on ``sys.path``).
    It must exit 0 and print nothing on stdout.
    """
    environment = {**os.environ, **env}
    environment.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [str(SCRIPT), "worker", "--poll-interval", "0.1", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not until():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the worker did not get there in a minute"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == ""
    return err
