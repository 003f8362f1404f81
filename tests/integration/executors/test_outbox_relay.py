"""The outbox relay on its own: at-least-once publication, backoff, delays, leases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Database
from squidmesh_sdk.executors.outbox import OutboxRelay
from squidmesh_sdk.store import outbox as outbox_store
from squidmesh_sdk.store.schema import outbox
from squidmesh_sdk.testing import FakeClock
from tests.integration.worker.conftest import wait_until


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    instance = Database(database_url)
    yield instance
    instance.dispose()


def _add(database: Database, clock: FakeClock, *delays: float | None) -> list[int]:
    with database.transaction(clock.now()) as tx:
        return outbox_store.add(
            tx,
            [
                outbox_store.NewMessage("q", {"kind": "cron", "n": i}, delay=d)
                for i, d in enumerate(delays)
            ],
        )


def _rows(database: Database) -> list[sa.Row[tuple[int, int, str | None]]]:
    with database.read() as connection:
        return list(
            connection.execute(
                sa.select(outbox.c.id, outbox.c.attempts, outbox.c.last_error).order_by(outbox.c.id)
            )
        )


def test_due_messages_are_published_in_order_and_again_until_their_delivery_removes_them(
    database: Database,
) -> None:
    clock = FakeClock()
    first, second, delayed = _add(database, clock, None, None, 30)
    published: list[int] = []
    relay = OutboxRelay(
        database, clock, lambda m: published.append(m.payload["n"]), batch=1, redeliver_after=60
    )
    assert relay.relay() == 2
    assert published == [0, 1]
    assert relay.relay() == 0, "published ones wait for their delivery; the delayed one too"
    with database.transaction(clock.now()) as tx:  # the first message's delivery is done
        outbox_store.remove(tx, [first])
    clock.advance(30)
    assert relay.relay() == 1
    assert published == [0, 1, 2]
    clock.advance(30)  # the second one's delivery never finished: the broker lost it
    assert relay.relay() == 1
    assert published == [0, 1, 2, 1]
    assert [row.id for row in _rows(database)] == [second, delayed]


def test_a_refused_publish_keeps_the_message_and_retries_it_with_backoff(
    database: Database,
) -> None:
    clock = FakeClock()
    _add(database, clock, None, None)
    broker_up = False
    published: list[int] = []

    def publish(message: outbox_store.Message) -> None:
        if not broker_up:
            raise ConnectionError("broker unreachable")
        published.append(message.payload["n"])

    relay = OutboxRelay(database, clock, publish)
    assert relay.relay() == 0
    assert [(r.attempts, r.last_error) for r in _rows(database)] == [
        (1, "ConnectionError: broker unreachable"),
        (1, "ConnectionError: broker unreachable"),
    ]
    broker_up = True
    assert relay.relay() == 0, "postponed by 1 s"
    clock.advance(1)
    assert relay.relay() == 2
    assert published == [0, 1]
    assert [(r.attempts, r.last_error) for r in _rows(database)] == [(2, None), (2, None)]


def test_a_message_taken_by_a_relay_that_died_is_published_again_after_its_lease(
    database: Database,
) -> None:
    clock = FakeClock()
    [message_id] = _add(database, clock, None)
    with database.transaction(clock.now()) as tx:  # a relay takes it, then dies
        assert [m.id for m in outbox_store.take(tx, lease=30, limit=10)] == [message_id]
    published: list[int] = []
    relay = OutboxRelay(database, clock, lambda m: published.append(m.id))
    assert relay.relay() == 0, "leased to the other relay"
    clock.advance(30)
    assert relay.relay() == 1
    assert published == [message_id]


def test_the_background_thread_publishes_when_woken(database: Database) -> None:
    clock = FakeClock()
    published: list[int] = []
    relay = OutboxRelay(database, clock, lambda m: published.append(m.id), interval=60)
    relay.start()
    try:
        [message_id] = _add(database, clock, None)
        relay.wake()  # long before the 60 s interval is over
        wait_until(lambda: bool(published), timeout=10, what="the woken relay to publish")
        assert published == [message_id]
    finally:
        relay.stop()
    assert not relay.running


@pytest.mark.parametrize(
    ("option", "value"),
    [("interval", 0), ("batch", 0), ("lease", -1.0), ("redeliver_after", 0)],
)
def test_bad_settings_are_refused_by_name(database: Database, option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        OutboxRelay(database, FakeClock(), lambda m: None, **{option: value})  # type: ignore[arg-type]


def test_a_late_duplicate_never_removes_a_newer_message_that_reused_its_row_id(
    database: Database,
) -> None:
    clock = FakeClock()

    def add(token: str) -> int:
        with database.transaction(clock.now()) as tx:
            message = outbox_store.NewMessage("q", {"kind": "cron", "message_id": token})
            return outbox_store.add(tx, [message])[0]

    old = add("old")
    with database.transaction(clock.now()) as tx:
        outbox_store.remove_delivered(tx, old, "old")
    new = add("new")  # SQLite hands the emptied table's ids out again; PostgreSQL never does
    with database.transaction(clock.now()) as tx:  # the old message's duplicate arrives
        outbox_store.remove_delivered(tx, new, "old")
    assert [row.id for row in _rows(database)] == [new]
    with database.transaction(clock.now()) as tx:
        outbox_store.remove_delivered(tx, new, "new")
    assert _rows(database) == []
