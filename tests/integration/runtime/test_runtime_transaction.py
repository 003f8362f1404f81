"""``Runtime.transaction``: what commits, what is emitted, and what a failure leaves behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from squidmesh_sdk import InlineExecutor
from squidmesh_sdk.clock import current_clock
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RunEvent
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.database import Database, Transaction


class _FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 12, 7, 0, 0, tzinfo=UTC)


class _Events:
    def __init__(self) -> None:
        self.seen: list[object] = []

    def emit(self, event: RunEvent) -> None:
        self.seen.append(event)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


def _runtime(database: Database, events: _Events, **options: object) -> Runtime:
    return Runtime(
        database=database,
        workflows={},
        executor=InlineExecutor(),
        clock=_FixedClock(),
        observers=(events,),
        **options,  # type: ignore[arg-type]
    )


def _write(tx: Transaction, name: str) -> None:
    job_store.enqueue(tx, [job_store.NewJob(kind="cron", payload={"n": name}, queue="q")])
    tx.events.append(name)  # any object: the observer only keeps it


def _write_in(runtime: Runtime, called: list[int], then: Exception | None = None) -> None:
    """Queue job "a" in a transaction with an after-commit callback; raise ``then`` in it."""
    with runtime.transaction() as tx:
        _write(tx, "a")
        tx.after_commit(lambda: called.append(1))
        if then is not None:
            raise then


def _queued(database: Database) -> list[str]:
    with database.read() as connection:
        return sorted(str(job.payload["n"]) for job in job_store.list_jobs(connection))


def test_a_transaction_commits_then_emits_its_events_and_runs_its_callbacks(
    database: Database,
) -> None:
    events, order = _Events(), []
    runtime = _runtime(database, events, before_commit=lambda _rt, tx: order.append("before"))
    with runtime.transaction() as tx:
        assert current_clock() is runtime.clock  # payload defaults agree with the stamps
        _write(tx, "a")
        tx.after_commit(lambda: order.append(f"callback, events {events.seen}"))
    assert order == ["before", "callback, events ['a']"]  # emitted first, then the callbacks
    assert _queued(database) == ["a"]
    assert current_clock() is not runtime.clock


def test_a_block_that_raises_commits_nothing_and_emits_nothing(database: Database) -> None:
    events, called = _Events(), list[int]()
    runtime = _runtime(database, events)
    with pytest.raises(RuntimeError, match="boom"):
        _write_in(runtime, called, then=RuntimeError("boom"))
    assert (_queued(database), events.seen, called) == ([], [], [])
    assert current_clock() is not runtime.clock
    with runtime.transaction() as tx:  # the thread's next transaction works
        _write(tx, "b")
    assert _queued(database) == ["b"]


def test_a_before_commit_hook_that_raises_rolls_the_block_back(database: Database) -> None:
    def refuse(_runtime: Runtime, _tx: Transaction) -> None:
        raise ValueError("refused at commit")

    events, called = _Events(), list[int]()
    runtime = _runtime(database, events, before_commit=refuse)
    with pytest.raises(ValueError, match="refused at commit"):
        _write_in(runtime, called)
    assert (_queued(database), events.seen, called) == ([], [], [])
    assert current_clock() is not runtime.clock
    runtime.before_commit = None
    with runtime.transaction() as tx:  # the thread's next transaction works
        _write(tx, "b")
    assert _queued(database) == ["b"]


def test_a_transaction_that_cannot_begin_leaves_the_clock_as_it_was(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connection() -> None:
        raise ConnectionError("no connection today")

    runtime = _runtime(database, _Events())
    runtime.check_schema()  # read once, before connections fail
    monkeypatch.setattr(database.engine, "connect", no_connection)
    if database._kept is not None:
        monkeypatch.setattr(database._kept, "take", no_connection)
    with pytest.raises(ConnectionError, match="no connection today"):
        _write_in(runtime, [])
    assert current_clock() is not runtime.clock
