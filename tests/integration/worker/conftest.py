"""Clients, worker processes and polling helpers for the worker tests."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from squidmesh_sdk import Client, Run, Worker
from squidmesh_sdk.runtime.events import RunTransitioned
from squidmesh_sdk.store import schema
from tests.integration.worker.app import make_client
from tests.integration.worker.processes import Spawn, worker_processes

ROOT = Path(__file__).parents[3]


def wait_until(condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail the test (not time it) if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def settled(client: Client, runs: list[Run]) -> Callable[[], bool]:
    """A condition: every run is completed, failed or cancelled (one query per poll)."""
    ids = [uuid.UUID(run.id) for run in runs]

    def check() -> bool:
        with client.database.read() as connection:
            unsettled = connection.scalar(
                sa.select(sa.func.count()).where(
                    schema.runs.c.id.in_(ids),
                    schema.runs.c.status.not_in(["completed", "failed", "cancelled"]),
                )
            )
        return unsettled == 0

    return check


class Completions:
    """An observer: the ids of the runs completed so far, and a hook called for each."""

    def __init__(self, on_completed: Callable[[str], None] = lambda _run_id: None) -> None:
        self.completed: list[str] = []
        self._on_completed = on_completed

    def emit(self, event: object) -> None:
        if isinstance(event, RunTransitioned) and event.to_status == "completed":
            self.completed.append(event.run.id)
            self._on_completed(event.run.id)


def busy_wakes(worker: Worker) -> threading.Event:
    """An event set once ``worker``'s loop, woken, finds none of its threads free."""
    woken_while_busy = threading.Event()
    claim = worker._claim

    def noting_busy_wakes(pool: concurrent.futures.ThreadPoolExecutor) -> int:
        if worker._threads.free() == 0:
            woken_while_busy.set()
        return claim(pool)

    worker._claim = noting_busy_wakes  # type: ignore[method-assign]
    return woken_while_busy


def workers_up(client: Client) -> None:
    """Wait until a worker has run a one-step run: the workers just spawned are up.

    A test whose run has a deadline starts it only then, since the deadline counts from the
    run's start and a process takes a while to start on a busy machine.
    """
    run = client.start_run("one_step")
    wait_until(settled(client, [run]), what="a worker to be up")


def settled_or_restarting(client: Client, runs: list[Run]) -> bool:
    """Like ``settled(client, runs)()``, but ``False`` while the database is unreachable."""
    try:
        return settled(client, runs)()
    except DBAPIError:
        return False  # the database is restarting


def attempts_by_step(client: Client, run_id: str) -> dict[str, list[str]]:
    """The statuses of each step's attempts, oldest first."""
    run = client.inspect_run(run_id, include_history=True)
    return {sr.step: [a.status for a in sr.attempts or ()] for sr in run.step_runs or ()}


def gated_run(client: Client, tmp_path: Path) -> tuple[Run, Path, Path]:
    """Start a ``gated`` run; its step ``blocked`` touches ``started``, then waits for ``gate``."""
    gate, started = tmp_path / "gate", tmp_path / "started"
    run = client.start_run("gated", {"gate": str(gate), "started": str(started)})
    return run, gate, started


@pytest.fixture
def client(database_url: str) -> Iterator[Client]:
    """A database-queue client on this test's database."""
    with make_client(database_url) as instance:
        yield instance


@pytest.fixture
def spawn_worker() -> Iterator[Spawn]:
    """Start worker processes; any still running at the end are killed."""
    with worker_processes("tests.integration.worker.app", lease=1.0, concurrency=2) as spawn:
        yield spawn
