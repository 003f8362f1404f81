"""Procrastinate's schema and engine worker processes (``redis`` is in tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import procrastinate
import pytest

from tests.integration.executors.engines import procrastinate_conninfo
from tests.integration.worker.conftest import ROOT

SpawnEngine = Callable[..., subprocess.Popen[bytes]]


def apply_procrastinate_schema(database_url: str) -> None:
    """Create Procrastinate's tables in the database of ``database_url``."""
    app = procrastinate.App(
        connector=procrastinate.SyncPsycopgConnector(conninfo=procrastinate_conninfo(database_url))
    )
    with app.open():
        app.schema_manager.apply_schema()


@pytest.fixture
def procrastinate_url(database_url: str) -> str:
    """This test's PostgreSQL database, with Procrastinate's schema applied beside squidmesh's."""
    apply_procrastinate_schema(database_url)
    return database_url


@pytest.fixture
def spawn_engine_worker(tmp_path: Path) -> Iterator[SpawnEngine]:
    """Start engine worker processes; any still running at the end are killed.

    Each one logs to ``worker-N.log`` in the test's temporary directory.
    """
    started: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"worker-{len(started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.executors.engines", *args],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
