"""Group commit: outcomes that are waiting together are committed in one transaction.

The grouping is made deterministic here: the first writer blocks inside its transaction until
the others have queued their outcomes, which then form the next group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from squidmesh_sdk import Client, Worker
from squidmesh_sdk.runtime.group_commit import GroupCommit
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.database import Transaction
from tests.integration.worker.conftest import attempts_by_step, settled, wait_until


def _enqueue(name: str) -> Callable[[Transaction], None]:
    def write(tx: Transaction) -> None:
        job_store.enqueue(tx, [job_store.NewJob(kind="cron", payload={"n": name}, queue="q")])
        tx.after_commit(lambda: committed.append((name, threading.current_thread().name)))

    return write


committed: list[tuple[str, str]] = []


def _queued(client: Client) -> list[str]:
    with client.database.read() as connection:
        return sorted(str(job.payload["n"]) for job in job_store.list_jobs(connection))


def _writers(
    group: GroupCommit, writes: dict[str, Callable[[Transaction], None]]
) -> tuple[dict[str, BaseException], list[threading.Thread]]:
    errors: dict[str, BaseException] = {}

    def submit(name: str) -> None:
        try:
            group.write(writes[name], order=name)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            errors[name] = exc

    threads = [threading.Thread(target=submit, args=(name,), name=name) for name in writes]
    return errors, threads


def _hold_first_until_queued(
    group: GroupCommit, waiting: int
) -> tuple[Callable[[Transaction], None], threading.Event]:
    """A write that, inside its transaction, waits until ``waiting`` outcomes are queued."""
    entered = threading.Event()

    def first(tx: Transaction) -> None:
        entered.set()
        wait_until(lambda: len(group._queue) == waiting, timeout=10, what="queued outcomes")
        _enqueue("a")(tx)

    return first, entered


def test_outcomes_waiting_together_share_one_transaction(client: Client) -> None:
    committed.clear()
    group = GroupCommit(client.runtime)
    first, entered = _hold_first_until_queued(group, 3)
    writes = {"a": first, "b": _enqueue("b"), "c": _enqueue("c"), "d": _enqueue("d")}
    errors, threads = _writers(group, writes)
    threads[0].start()
    assert entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == {}
    assert _queued(client) == ["a", "b", "c", "d"]
    # "a" alone (it was writing when the others came), then b, c and d together.
    assert (group.groups, group.outcomes) == (2, 4)
    # After-commit callbacks run in each outcome's own thread.
    assert sorted(committed) == [("a", "a"), ("b", "b"), ("c", "c"), ("d", "d")]


def test_an_outcome_that_raises_loses_nothing_of_the_others(client: Client) -> None:
    committed.clear()
    group = GroupCommit(client.runtime)
    first, entered = _hold_first_until_queued(group, 3)

    def refused(tx: Transaction) -> None:
        _enqueue("c")(tx)  # written, then rolled back with its outcome
        raise ValueError("refused")

    writes = {"a": first, "b": _enqueue("b"), "c": refused, "d": _enqueue("d")}
    errors, threads = _writers(group, writes)
    threads[0].start()
    assert entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert list(errors) == ["c"]
    assert isinstance(errors["c"], ValueError)
    assert _queued(client) == ["a", "b", "d"]
    assert sorted(committed) == [("a", "a"), ("b", "b"), ("d", "d")]
    assert (group.groups, group.outcomes) == (2, 3)


class _PausingLock:
    """The group's lock, pausing one thread just after it first released it (it had queued)."""

    def __init__(self, thread: str) -> None:
        self._lock = threading.Lock()
        self._thread = thread
        self.paused = threading.Event()
        self.resume = threading.Event()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()
        if threading.current_thread().name == self._thread and not self.paused.is_set():
            self.paused.set()
            assert self.resume.wait(10)


def test_an_outcome_made_the_next_leader_before_it_waited_leads_once(client: Client) -> None:
    # "b" queues while "a" commits, and is paused before it waits; "a" finishes and makes "b"
    # the next leader. "b" then leads its own group exactly once: waking it must not count
    # twice (a thread woken twice, or a lock released twice, loses the others' wake-ups).
    committed.clear()
    group = GroupCommit(client.runtime)
    pausing = _PausingLock("b")
    group._lock = pausing  # type: ignore[assignment]
    first, entered = _hold_first_until_queued(group, 1)
    errors, threads = _writers(group, {"a": first, "b": _enqueue("b")})
    threads[0].start()
    assert entered.wait(10)
    threads[1].start()
    assert pausing.paused.wait(10)
    threads[0].join(20)
    assert not threads[0].is_alive()
    pausing.resume.set()
    threads[1].join(20)
    assert not threads[1].is_alive()
    assert errors == {}
    assert _queued(client) == ["a", "b"]
    assert sorted(committed) == [("a", "a"), ("b", "b")]
    assert (group.groups, group.outcomes) == (2, 2)


def test_a_lone_outcome_is_written_at_once_by_its_own_thread(client: Client) -> None:
    committed.clear()
    group = GroupCommit(client.runtime)
    group.write(_enqueue("alone"))
    assert committed == [("alone", threading.current_thread().name)]
    assert (group.groups, group.outcomes) == (1, 1)
    with pytest.raises(ZeroDivisionError):
        group.write(lambda tx: _enqueue("never")(tx) or 1 // 0)  # type: ignore[func-returns-value]
    assert _queued(client) == ["alone"]


def test_a_worker_with_threads_groups_outcomes_and_records_every_attempt(
    client: Client,
) -> None:
    runs = [client.start_run("five_steps") for _ in range(12)]
    worker = Worker(client, concurrency=4, poll_interval=0.05, group_commit=True)
    assert worker.group_commit is not None
    with worker:
        wait_until(settled(client, runs), what="the runs to finish")
    for run in runs:
        assert client.inspect_run(run.id).status == "completed"
        assert attempts_by_step(client, run.id) == {f"step_{n}": ["completed"] for n in range(1, 6)}
    with client.database.read() as connection:
        assert job_store.list_jobs(connection) == []
    assert worker.group_commit.outcomes == 12 * 5
    assert Worker(client, concurrency=1, group_commit=True).group_commit is None
    assert Worker(client, concurrency=4, group_commit=False).group_commit is None
    # By default only SQLite groups (one writer at a time).
    grouped = Worker(client, concurrency=4).group_commit is not None
    assert grouped == (client.database.dialect == "sqlite")
