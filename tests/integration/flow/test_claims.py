"""The claim under flow control: priority order, per-key and queue limits, the rate bucket.

In-process claims on SQLite and PostgreSQL (``claim_store.claim`` as a worker calls it), with a
fake clock so that rate limits are exact. What a user would see: which jobs a worker takes,
and which stay queued, untouched.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from squidmesh_sdk import (
    Client,
    ConcurrencyLimit,
    DatabaseExecutor,
    InvalidArgument,
    RateLimit,
    Workflow,
    manual,
)
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import flow as flow_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.testing import FakeClock
from tests.integration.flow.app import FlowPayload, keyed_workflow, plain_workflow


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(database_url: str, clock: FakeClock) -> Iterator[Client]:
    with _flow_client(database_url, clock) as instance:
        yield instance


def _flow_client(url: str, clock: FakeClock) -> Client:
    workflows = [keyed_workflow(limit=2), plain_workflow(), _one_per_customer()]
    return Client(url, workflows, executor=DatabaseExecutor(), clock=clock)


def _one_per_customer() -> Workflow:
    workflow = Workflow(
        "one_per_customer",
        triggers=[manual("go", payload=FlowPayload)],
        concurrency=ConcurrencyLimit("payload.customer", limit=1),
    )

    @workflow.step
    def only() -> dict[str, bool]:
        return {"done": True}

    return workflow


def _claim(client: Client, limit: int, worker: str = "w") -> list[job_store.Job]:
    with client.runtime.transaction() as tx:
        return claim_store.claim(tx, worker=worker, queues=["default"], limit=limit, lease=60)


def _jobs(client: Client) -> dict[str, job_store.Job]:
    with client.database.read() as connection:
        return {job.run_id or "": job for job in job_store.list_jobs(connection)}


def test_jobs_carry_their_run_s_priority_and_higher_priorities_are_claimed_first(
    client: Client, clock: FakeClock
) -> None:
    low = client.start_run("plain", {"customer": "a"}, priority=-5)
    clock.advance(1)
    normal = client.start_run("plain", {"customer": "a"})
    clock.advance(1)
    high = client.start_run("plain", {"customer": "a"}, priority=7)
    clock.advance(1)
    also_high = client.start_run("plain", {"customer": "a"}, priority=7)
    assert [run.priority for run in (low, normal, high)] == [-5, 0, 7]
    assert client.inspect_run(high.id).priority == 7
    order = [job.run_id for _ in range(4) for job in _claim(client, 1)]
    # Higher first; within a priority, the oldest first.
    assert order == [high.id, also_high.id, normal.id, low.id]


def test_a_batch_claim_returns_jobs_in_claim_order(client: Client, clock: FakeClock) -> None:
    runs = []
    for priority in (0, 3, -1, 3):
        runs.append(client.start_run("plain", {"customer": "a"}, priority=priority))
        clock.advance(1)
    claimed = _claim(client, 10)
    assert [job.run_id for job in claimed] == [runs[1].id, runs[3].id, runs[0].id, runs[2].id]


@pytest.mark.parametrize("priority", [1001, -1001, 1.5, True, "high"])
def test_a_priority_out_of_bounds_or_not_an_integer_is_refused(
    client: Client, priority: object
) -> None:
    with pytest.raises(InvalidArgument, match="priority must be"):
        client.start_run("plain", {"customer": "a"}, priority=priority)  # type: ignore[arg-type]
    assert client.list_runs() == []


def test_no_more_than_the_limit_of_one_key_is_claimed_and_the_rest_stay_queued_untouched(
    client: Client, clock: FakeClock
) -> None:
    runs = []
    for _ in range(5):
        runs.append(client.start_run("keyed", {"customer": "acme"}))
        clock.advance(1)
    before = _jobs(client)
    claimed = _claim(client, 10)
    assert [job.run_id for job in claimed] == [runs[0].id, runs[1].id]
    assert {job.concurrency_key for job in claimed} == {'keyed:payload.customer="acme"'}
    after = _jobs(client)
    for run in runs[2:]:
        job = after[run.id]
        assert (job.status, job.locked_by, job.locked_until, job.deliveries, job.run_at) == (
            "queued",
            None,
            None,
            0,
            before[run.id].run_at,
        )
    # Nothing more while both run; another claimer finds nothing either.
    assert _claim(client, 10, worker="other") == []


def test_a_full_key_does_not_hold_back_other_jobs_behind_it(
    client: Client, clock: FakeClock
) -> None:
    held = []
    for _ in range(6):
        held.append(client.start_run("one_per_customer", {"customer": "big"}))
        clock.advance(1)
    small = client.start_run("one_per_customer", {"customer": "small"})
    clock.advance(1)
    plain = client.start_run("plain", {"customer": "x"})
    # Limit 3: the first batch is three "big" jobs, of which one fits; the claim goes on past
    # them to the jobs that fit.
    claimed = _claim(client, 3)
    assert [job.run_id for job in claimed] == [held[0].id, small.id, plain.id]


def test_a_job_s_slot_frees_when_its_job_ends(client: Client, clock: FakeClock) -> None:
    first = client.start_run("one_per_customer", {"customer": "big"})
    clock.advance(1)
    second = client.start_run("one_per_customer", {"customer": "big"})
    (job,) = _claim(client, 10)
    assert job.run_id == first.id
    assert _claim(client, 10) == []
    with client.runtime.transaction() as tx:
        assert job_store.complete(tx, job.id, worker="w")
    (job,) = _claim(client, 10)
    assert job.run_id == second.id


def test_a_queue_concurrency_limit_counts_running_jobs_of_every_worker(
    client: Client, clock: FakeClock
) -> None:
    for _ in range(5):
        client.start_run("plain", {"customer": "a"})
        clock.advance(1)
    client.set_queue_limits("default", concurrency=3)
    assert len(_claim(client, 2, worker="a")) == 2
    assert len(_claim(client, 2, worker="b")) == 1
    assert _claim(client, 2, worker="c") == []
    assert client.clear_queue_limits("default")
    assert len(_claim(client, 5, worker="c")) == 2


def test_limits_on_another_queue_leave_this_queue_s_claim_unlimited(
    client: Client, clock: FakeClock
) -> None:
    # The claim reports, per job, whether its queue has limits: only then does it take the
    # limited path (lock the limit rows, count running jobs). Each job is judged by its own queue.
    # Read from the claim's private first batch: a wrong answer only sent claims down the
    # slower path, with the same jobs claimed, so nothing public shows it.
    client.start_run("plain", {"customer": "a"})
    client.set_queue_limits("elsewhere", concurrency=1)
    with client.runtime.transaction() as tx:
        (row,) = claim_store._claim_batch(tx, "w", ["default"], 1, 60, None)
    assert (row["queue"], row["queue_limited"]) == ("default", False)
    client.start_run("plain", {"customer": "a"})
    client.set_queue_limits("default", concurrency=5)
    with client.runtime.transaction() as tx:
        (row,) = claim_store._claim_batch(tx, "w", ["default"], 1, 60, None)
    assert (row["queue"], row["queue_limited"]) == ("default", True)


def test_a_claim_meeting_more_keys_than_one_statement_binds_keeps_every_key_s_limit(
    client: Client, clock: FakeClock
) -> None:
    # The keys' counts and locks bind 64 keys a statement (a shorter list is padded to a
    # prepared length): 70 keys take two statements of each, and keys already full sit in both.
    customers = [f"c{index:02d}" for index in range(70)]
    for customer in customers[60:]:
        client.start_run("one_per_customer", {"customer": customer})
        clock.advance(1)
    assert len(_claim(client, 10)) == 10  # c60 to c69 are running: their keys are full
    for _ in range(2):
        for customer in customers:
            client.start_run("one_per_customer", {"customer": customer})
            clock.advance(1)
    claimed = _claim(client, 200)
    by_customer = sorted(str(job.concurrency_key) for job in claimed)
    assert by_customer == [
        f'one_per_customer:payload.customer="{customer}"' for customer in customers[:60]
    ]
    assert _claim(client, 200) == []


def test_the_limits_of_a_few_queues_are_locked_and_counted_each_once(
    client: Client, clock: FakeClock
) -> None:
    for queue, concurrency in (("q3", 3), ("q1", 1), ("q2", 2)):
        client.set_queue_limits(queue, concurrency=concurrency)
    for _ in range(3):
        client.start_run("plain", {"customer": "a"})
    with client.runtime.transaction() as tx:
        # Three queues are bound as four values, the last one repeated.
        limits = flow_store.lock_queue_limits(tx, ["q3", "q1", "q2"])
        assert [(name, found.concurrency) for name, found in limits.items()] == [
            ("q1", 1),
            ("q2", 2),
            ("q3", 3),
        ]
        assert flow_store.lock_queue_limits(tx, []) == {}
        claim_store.claim(tx, worker="w", queues=["default"], limit=2, lease=60)
        running = flow_store.running_per_queue(tx.connection, ["q2", "default", "q1"])
    assert running == {"default": 2}


def test_the_limits_of_more_queues_than_a_padded_statement_binds_are_locked_at_once(
    client: Client,
) -> None:
    # One statement whatever their number, so that the database orders all the rows it locks
    # by its own collation (here upper and lower case, which collations order differently).
    queues = ["B", *(f"a{index:02d}" for index in range(60))]
    for index, queue in enumerate(queues):
        client.set_queue_limits(queue, concurrency=index + 1)
    sent: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement)

    sa.event.listen(client.database.engine, "before_cursor_execute", note)
    try:
        with client.runtime.transaction() as tx:
            limits = flow_store.lock_queue_limits(tx, [*reversed(queues), "none"])
    finally:
        sa.event.remove(client.database.engine, "before_cursor_execute", note)
    assert {name: found.concurrency for name, found in limits.items()} == {
        queue: index + 1 for index, queue in enumerate(queues)
    }
    assert len([statement for statement in sent if "squidmesh_queue_limits" in statement]) == 1


def _claim_one_by_one(client: Client, count: int) -> sa.engine.Connection:
    """Start ``count`` runs, claim their jobs one per transaction as a worker would."""
    for _ in range(count):
        client.start_run("plain", {"customer": "a"})
    for _ in range(count):
        with client.runtime.transaction() as tx:
            claimed = claim_store.claim(
                tx, worker="w", queues=["default"], limit=1, lease=60, holds=client.runtime.holds
            )
            assert len(claimed) == 1
            connection = tx.connection
    return connection


def test_sqlite_compiles_the_claim_once_not_at_every_claim(
    tmp_path: Path, clock: FakeClock
) -> None:
    compiled: list[str | None] = []

    def authorize(action: int, table: str | None, column: str | None, *_: object) -> int:
        # SQLite asks while it compiles a statement, never while it runs one.
        if action == sqlite3.SQLITE_UPDATE and (table, column) == ("squidmesh_jobs", "deliveries"):
            compiled.append(table)
        return sqlite3.SQLITE_OK

    with _flow_client(f"sqlite+pysqlite:///{tmp_path}/claims.db", clock) as client:
        client.migrate()
        connection = _claim_one_by_one(client, 1)
        connection.connection.dbapi_connection.set_authorizer(authorize)  # type: ignore[union-attr]
        _claim_one_by_one(client, 6)
    # The first claim compiles it again (a new authorizer expires compiled statements), once.
    assert len(compiled) == 1


def _twelve_runs_on_a_queue_of_4_a_minute(client: Client) -> None:
    for _ in range(12):
        client.start_run("plain", {"customer": "a"})
    client.set_queue_limits("default", rate_limit=RateLimit(4, per=timedelta(minutes=1)))


def test_a_rate_limit_spends_a_token_bucket_refilled_with_time(
    client: Client, clock: FakeClock
) -> None:
    _twelve_runs_on_a_queue_of_4_a_minute(client)
    assert len(_claim(client, 10)) == 4  # the burst: a full bucket
    assert _claim(client, 10) == []
    clock.advance(14.9)  # one token takes 15 s
    assert _claim(client, 10) == []
    clock.advance(0.2)
    assert len(_claim(client, 10)) == 1
    clock.advance(3600)  # an idle hour refills the bucket, no further than its size
    assert len(_claim(client, 10)) == 4
    (limits,) = client.queue_limits()
    assert limits.rate == RateLimit(4, per=timedelta(minutes=1))
    assert limits.tokens_at(clock.now()) == 0
    assert limits.next_token_at(clock.now()) == clock.now() + timedelta(seconds=15)


def test_a_claim_stamped_before_the_bucket_s_last_write_credits_no_time_twice(
    client: Client, clock: FakeClock
) -> None:
    # A claim made late in a transaction stamped earlier (one that waited for the limits'
    # lock, or a worker's next-job claim at the end of a step's outcome) sees the bucket as
    # of its last write and must not wind its time back.
    _twelve_runs_on_a_queue_of_4_a_minute(client)
    start = clock.now()
    assert len(_claim(client, 2)) == 2  # 2 tokens left
    clock.advance(30)  # 2 more accrue: 4 (the cap); this claim leaves 3
    assert len(_claim(client, 1)) == 1
    with client.database.transaction(start + timedelta(seconds=15)) as tx:
        stale = claim_store.claim(tx, worker="w", queues=["default"], limit=1, lease=60)
    assert len(stale) == 1  # 2 tokens left, as of the last write (30 s)
    # Nothing accrued since the last write: the 15 s before it were credited once already.
    assert len(_claim(client, 10)) == 2
    (limits,) = client.queue_limits()
    assert limits.tokens_at(clock.now()) == 0


def test_setting_the_same_rate_again_grants_no_new_burst(client: Client, clock: FakeClock) -> None:
    for _ in range(6):
        client.start_run("plain", {"customer": "a"})
    rate = RateLimit(2, per=timedelta(seconds=10))
    client.set_queue_limits("default", rate_limit=rate)
    assert len(_claim(client, 10)) == 2
    client.set_queue_limits("default", rate_limit=rate)
    assert _claim(client, 10) == []
    client.set_queue_limits("default", rate_limit=RateLimit(3, per=timedelta(seconds=10)))
    assert len(_claim(client, 10)) == 3  # a new rate starts with a full bucket


def test_bucket_arithmetic() -> None:
    rate = RateLimit(10, per=timedelta(seconds=1))
    start = FakeClock().now()
    assert flow_store.refill(rate, None, None, start) == 10
    assert flow_store.refill(rate, 0.0, start, start + timedelta(seconds=0.5)) == pytest.approx(5)
    assert flow_store.refill(rate, 9.0, start, start + timedelta(seconds=5)) == 10
    # A clock that went back accrues nothing and takes nothing away.
    assert flow_store.refill(rate, 3.0, start, start - timedelta(seconds=5)) == 3


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"concurrency": 0}, "concurrency must be an integer from 1 to 2,147,483,647"),
        ({"concurrency": 10**20}, "concurrency must be an integer from 1"),  # was OverflowError
        ({"rate_limit": RateLimit(0, per=timedelta(seconds=1))}, "count must be an integer"),
        ({"rate_limit": RateLimit(10**20, per=timedelta(seconds=1))}, "count must be an integer"),
        ({"queue": "q" * 101}, "at most 100 characters"),
        ({"rate_limit": RateLimit(1, per=timedelta(0))}, "period must be a positive timedelta"),
        ({"rate_limit": "100/1m"}, "rate_limit takes a RateLimit"),
    ],
)
def test_malformed_queue_limits_are_refused(
    client: Client, kwargs: dict[str, object], problem: str
) -> None:
    arguments = {"queue": "default", **kwargs}
    with pytest.raises(InvalidArgument, match=problem):
        client.set_queue_limits(**arguments)  # type: ignore[arg-type]
    assert client.queue_limits() == []


@pytest.mark.postgres
def test_a_claim_s_key_locks_cover_every_key_it_met_on_postgresql(
    postgres_database_url: str, clock: FakeClock
) -> None:
    keys = [f"key-{index:02d}" for index in range(70)]  # two statements: 48, then 22 as 32
    others = sa.create_engine(postgres_database_url)
    try:
        with (
            _flow_client(postgres_database_url, clock) as client,
            client.runtime.transaction() as tx,
        ):
            flow_store.lock_keys(tx, reversed(keys))
            held = tx.connection.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid() AND granted"
            ).scalar()
            assert held == 70
            with others.connect() as other:
                # Another transaction finds the first and the last key taken, not a third.
                taken = [
                    other.execute(
                        sa.text("SELECT pg_try_advisory_xact_lock(:id)"),
                        {"id": flow_store.key_lock_id(key)},
                    ).scalar()
                    for key in (keys[0], keys[-1], "key-other")
                ]
                other.rollback()
            assert taken == [False, False, True]
    finally:
        others.dispose()


@pytest.mark.postgres
def test_a_key_another_claim_holds_is_only_tried_on_postgresql(
    postgres_database_url: str, clock: FakeClock
) -> None:
    others = sa.create_engine(postgres_database_url)
    try:
        with _flow_client(postgres_database_url, clock) as client, others.connect() as other:
            other.execute(
                sa.text("SELECT pg_advisory_xact_lock(:id)"),
                {"id": flow_store.key_lock_id("busy")},
            )
            with client.runtime.transaction() as tx:
                assert flow_store.try_lock_key(tx, "busy") is False
                assert flow_store.try_lock_key(tx, "free") is True
            other.rollback()
    finally:
        others.dispose()


@pytest.mark.postgres
def test_the_claim_index_is_scanned_in_claim_order_on_postgresql(
    postgres_database_url: str,
) -> None:
    engine = sa.create_engine(postgres_database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in connection.exec_driver_sql(
                    "EXPLAIN SELECT id FROM squidmesh_jobs WHERE status = 'queued' "
                    "AND queue = 'default' AND run_at <= now() "
                    "ORDER BY priority DESC, run_at, id LIMIT 10 FOR UPDATE SKIP LOCKED"
                )
            )
    finally:
        engine.dispose()
    assert "ix_squidmesh_jobs_claim" in plan
    assert "Sort" not in plan  # the index gives the order: no sort of every due job


def test_first_limits_set_at_once_by_several_operators_end_with_one_of_them(
    client: Client,
) -> None:
    # Nothing is stored for the queue yet: every caller inserts, and on PostgreSQL they race.
    barrier = threading.Barrier(6)
    failures: list[BaseException] = []

    def set_limit(concurrency: int) -> None:
        barrier.wait(timeout=30)
        try:
            client.set_queue_limits("fresh", concurrency=concurrency)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=set_limit, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    (limits,) = client.queue_limits()
    assert limits.queue == "fresh"
    assert limits.concurrency in range(1, 7)
