"""A worker's steps leave no garbage for the cycle collector.

Objects in a reference cycle are freed only when the garbage collector runs, and the
collections they trigger walk every young object: a worker that left one cycle per step (a
transaction whose after-commit callbacks closed over it) spent about 4 % of its CPU there.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from squidmesh_sdk import Client, DatabaseExecutor, Worker
from squidmesh_sdk.runtime.events import LoggingObserver, Observer
from tests.integration.worker.app import WORKFLOWS
from tests.integration.worker.conftest import Completions, wait_until

RUNS = 10


@pytest.fixture
def collector_paused() -> Iterator[None]:
    """No automatic collections for the test's span; what a collection finds is kept."""
    was_enabled = gc.isenabled()
    gc.disable()
    _forget_garbage()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
        if was_enabled:
            gc.enable()


def _forget_garbage() -> None:
    """Free what is garbage now, then keep what later collections find (``gc.garbage``)."""
    gc.set_debug(0)
    gc.garbage.clear()  # cycles kept there are garbage again, freed by the next line
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)


def _squidmesh_garbage() -> list[str]:
    """The squidmesh objects only the cycle collector could free, made since it last ran."""
    gc.collect()
    return sorted(
        type(thing).__qualname__
        for thing in gc.garbage
        if type(thing).__module__.startswith("squidmesh_sdk")
    )


@pytest.mark.parametrize("group_commit", [True, False], ids=["group-commit", "one-by-one"])
def test_steps_delivered_by_a_worker_leave_no_reference_cycle(
    database_url: str, group_commit: bool, collector_paused: None
) -> None:
    finished = Completions()
    observers: list[Observer] = [LoggingObserver(), finished]
    with Client(
        database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=observers
    ) as client:
        with Worker(client, concurrency=4, poll_interval=0.05, group_commit=group_commit):
            # One run first, so that what is made once (compiled statements, cached
            # definitions) is made; its garbage, if any, is freed before the runs that count.
            client.start_run("five_steps")
            wait_until(lambda: len(finished.completed) == 1, what="the warm-up run")
            _forget_garbage()
            runs = [client.start_run("five_steps") for _ in range(RUNS)]
            wait_until(lambda: len(finished.completed) == 1 + RUNS, what="the runs")
            garbage = _squidmesh_garbage()
        assert [client.inspect_run(run.id).status for run in runs] == ["completed"] * RUNS
    assert garbage == []
