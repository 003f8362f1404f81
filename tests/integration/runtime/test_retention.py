"""Client.purge_runs: old finished runs go with every row of theirs; the others stay."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    InvalidArgument,
    NonRetryableError,
    Workflow,
    cron,
    manual,
)
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import schema
from squidmesh_sdk.testing import FakeClock

WORKER = "retention-tests"
DAY = timedelta(days=1)

done = Workflow("done", triggers=[manual("go")])
done.chain(done.log("note", message="done"), COMPLETE)

failing = Workflow("failing", triggers=[manual("go")])


@failing.step
def explode() -> dict[str, Any]:
    raise NonRetryableError("boom")


failing.chain(explode, COMPLETE)

holding = Workflow("holding", triggers=[manual("hold")])
holding.chain(holding.pause("hold", output="hold"), COMPLETE)

saga = Workflow("saga", triggers=[manual("go")])


@saga.step
def charge() -> dict[str, Any]:
    return {"charge": "c-1"}


@charge.compensate
def refund() -> dict[str, Any]:
    return {"refunded": True}


@saga.step
def ship() -> dict[str, Any]:
    raise NonRetryableError("no stock")


saga.chain(charge, ship, COMPLETE)

nightly = Workflow(
    "nightly", triggers=[cron("tick", "0 3 * * *", idempotency="return_existing_run")]
)
nightly.chain(nightly.log("note", message="ran"), COMPLETE)

parent = Workflow("parent", triggers=[manual("go")])
parent.chain(parent.child("sub", workflow="holding", on_parent_close="abandon"), COMPLETE)

WINDOW = {"start_at": "2026-01-01T03:00:00+00:00", "end_at": "2026-01-02T03:00:00+00:00"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, 4, tzinfo=UTC))


@pytest.fixture
def client(database_url: str, clock: FakeClock) -> Iterator[Client]:
    workflows = [done, failing, holding, saga, nightly, parent]
    with Client(
        database_url, workflows, executor=DatabaseExecutor(), clock=clock, observers=()
    ) as test_client:
        test_client.migrate()
        yield test_client


def drain(client: Client) -> None:
    """Perform every due job, as a worker would."""
    for _ in range(100):
        with client.runtime.transaction() as tx:
            claimed = claim_store.claim(tx, worker=WORKER, queues=("default",), limit=10, lease=60)
        if not claimed:
            return
        for job in claimed:
            client.perform(job.payload)
            with client.runtime.transaction() as tx:
                job_store.complete(tx, job.id, worker=WORKER)
    raise AssertionError("the queue does not drain")


def started(client: Client, workflow: str, *, status: str) -> str:
    run = client.start_run(workflow)
    drain(client)
    if status == "cancelled":
        client.cancel_run(run.id)
    assert client.inspect_run(run.id).status == status
    return run.id


def rows_per_run(client: Client) -> dict[str, Counter[str]]:
    """Every table of a run's, to the number of rows each run has in it."""
    steps = schema.step_runs
    queries = {
        "squidmesh_runs": sa.select(schema.runs.c.id),
        "squidmesh_step_runs": sa.select(steps.c.run_id),
        "squidmesh_step_attempts": sa.select(steps.c.run_id).join_from(
            schema.attempts, steps, schema.attempts.c.step_run_id == steps.c.id
        ),
        "squidmesh_run_events": sa.select(schema.run_events.c.run_id),
        "squidmesh_jobs": sa.select(schema.jobs.c.run_id),
        "squidmesh_outbox": sa.select(schema.outbox.c.run_id),
    }
    with client.database.read() as connection:
        return {
            table: Counter(str(row[0]) for row in connection.execute(query))
            for table, query in queries.items()
        }


def rows_of(counts: dict[str, Counter[str]], run_ids: set[str]) -> dict[str, int]:
    return {table: sum(per_run[r] for r in run_ids) for table, per_run in counts.items()}


def dead_letter(client: Client, run_id: str) -> None:
    """A job that kept raising, left behind by a run that then finished."""
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.insert(schema.jobs).values(
                queue="default",
                kind="step",
                payload={"kind": "step", "run_id": run_id, "step": "hold"},
                run_id=uuid.UUID(run_id),
                step="hold",
                status="failed",
                run_at=tx.now,
                deliveries=25,
                rescues=0,
                inserted_at=tx.now,
                updated_at=tx.now,
            )
        )


@pytest.fixture
def runs(client: Client, clock: FakeClock) -> dict[str, str]:
    """Old runs in every kind of state, then recent ones; the clock 31 days on."""
    ids = {
        "completed": started(client, "done", status="completed"),
        "failed": started(client, "failing", status="failed"),
        "cancelled": started(client, "holding", status="cancelled"),
        "paused": started(client, "holding", status="paused"),
        "pending": client.start_run("done").id,
    }
    # Its first job is not due for a year: the run stays pending.
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.jobs)
            .where(schema.jobs.c.run_id == uuid.UUID(ids["pending"]))
            .values(run_at=tx.now + 365 * DAY)
        )
    dead_letter(client, ids["cancelled"])
    clock.advance(31 * DAY)
    ids["recent"] = started(client, "done", status="completed")
    return ids


OLD_FINISHED = ("completed", "failed", "cancelled")


def test_a_dry_run_lists_what_would_go_and_deletes_nothing(
    client: Client, runs: dict[str, str]
) -> None:
    before = rows_per_run(client)
    result = client.purge_runs(older_than=30 * DAY, dry_run=True)
    expected = {runs[name] for name in OLD_FINISHED}
    assert result.dry_run
    assert set(result.run_ids) == expected
    assert result.runs == 3
    assert dict(result.rows) == rows_of(before, expected)
    assert result.rows["squidmesh_jobs"] == 1  # the dead letter
    assert rows_per_run(client) == before


def test_a_purge_deletes_old_finished_runs_with_all_their_rows_and_keeps_the_rest(
    client: Client, runs: dict[str, str]
) -> None:
    before = rows_per_run(client)
    gone = {runs[name] for name in OLD_FINISHED}
    assert all(rows_of(before, {run_id})["squidmesh_step_runs"] for run_id in gone)

    result = client.purge_runs(older_than=30 * DAY)

    assert not result.dry_run
    assert (result.runs, result.run_ids) == (3, ())
    assert dict(result.rows) == rows_of(before, gone)
    after = rows_per_run(client)
    for table, per_run in after.items():
        assert not gone & set(per_run), table
        for run_id in set(runs.values()) - gone:
            assert per_run[run_id] == before[table][run_id], (table, run_id)
    statuses = {run.status for run in client.list_runs()}
    assert statuses == {"paused", "pending", "completed"}
    assert client.purge_runs(older_than=30 * DAY).runs == 0


def test_runs_changed_after_the_cutoff_are_kept(client: Client, runs: dict[str, str]) -> None:
    assert client.purge_runs(older_than=32 * DAY).runs == 0
    assert client.purge_runs(older_than=31 * DAY - timedelta(seconds=1)).runs == 3


def test_batches_smaller_than_the_backlog_still_purge_everything(
    client: Client, clock: FakeClock
) -> None:
    ids = {started(client, "done", status="completed") for _ in range(7)}
    clock.advance(2 * DAY)

    dry = client.purge_runs(older_than=DAY, batch_size=2, dry_run=True)
    assert (dry.runs, set(dry.run_ids), dry.batches) == (7, ids, 4)

    result = client.purge_runs(older_than=DAY, batch_size=2)
    assert (result.runs, result.batches) == (7, 4)
    assert client.list_runs() == []


def test_statuses_and_workflow_narrow_the_purge(client: Client, runs: dict[str, str]) -> None:
    failed = client.purge_runs(older_than=30 * DAY, statuses=["failed"], dry_run=True)
    assert failed.run_ids == (runs["failed"],)
    by_workflow = client.purge_runs(older_than=30 * DAY, workflow="holding", dry_run=True)
    assert by_workflow.run_ids == (runs["cancelled"],)
    assert client.purge_runs(older_than=30 * DAY, statuses=["completed"]).runs == 1
    assert {run.id for run in client.list_runs()} == set(runs.values()) - {runs["completed"]}


@pytest.mark.parametrize(
    "statuses", [["paused"], ["completed", "running"], ["pending"], ["cancelling"], []]
)
def test_unfinished_statuses_are_refused(
    client: Client, runs: dict[str, str], statuses: list[str]
) -> None:
    with pytest.raises(ValueError, match="only finished runs are purged"):
        client.purge_runs(older_than=30 * DAY, statuses=statuses)
    assert len(client.list_runs()) == len(runs)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"older_than": timedelta(0)}, "older_than"),
        ({"older_than": 5}, "older_than"),
        ({"older_than": None}, "older_than"),
        ({"older_than": timedelta(days=10**6)}, "older_than"),  # no date that far back
        ({"older_than": DAY, "batch_size": 0}, "batch_size"),
        ({"older_than": DAY, "batch_size": 2.5}, "batch_size"),
        ({"older_than": DAY, "batch_size": "5"}, "batch_size"),
        ({"older_than": DAY, "statuses": 5}, "statuses"),
        ({"older_than": DAY, "dry_run": "no"}, "dry_run"),  # was taken for a dry run
    ],
)
def test_bad_arguments_are_refused(
    client: Client, runs: dict[str, str], arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidArgument, match=named):
        client.purge_runs(**arguments)
    assert client.inspect_run(runs["completed"]).status == "completed"  # nothing purged


def test_a_failed_run_whose_compensation_has_not_finished_is_kept(
    client: Client, clock: FakeClock
) -> None:
    run = client.start_run("saga")
    for _ in range(2):  # charge, then ship fails and queues the refund
        with client.runtime.transaction() as tx:
            (job,) = claim_store.claim(tx, worker=WORKER, queues=("default",), limit=1, lease=60)
        client.perform(job.payload)
        with client.runtime.transaction() as tx:
            job_store.complete(tx, job.id, worker=WORKER)
    assert client.inspect_run(run.id).status == "failed"
    clock.advance(2 * DAY)

    # The refund is queued: the run still has work to do.
    assert client.purge_runs(older_than=DAY).runs == 0
    # An engine executor's job lives in its broker, not in our tables: still kept.
    with client.runtime.transaction() as tx:
        (refund_job,) = claim_store.claim(tx, worker=WORKER, queues=("default",), limit=1, lease=60)
        job_store.complete(tx, refund_job.id, worker=WORKER)
    assert refund_job.kind == "compensation"
    kept = client.purge_runs(older_than=DAY)
    assert (kept.runs, kept.kept_compensating) == (0, 1)

    assert client.perform(refund_job.payload) == "compensated"
    result = client.purge_runs(older_than=DAY)
    assert (result.runs, result.kept_compensating) == (1, 0)
    assert client.list_runs() == []


def test_a_dead_lettered_compensation_keeps_its_run(client: Client, clock: FakeClock) -> None:
    run = client.start_run("saga")
    drain(client)  # charge, ship fails, refund runs
    assert client.inspect_run(run.id).status == "failed"
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.insert(schema.jobs).values(
                queue="default",
                kind="compensation",
                payload={"kind": "compensation", "run_id": run.id},
                run_id=uuid.UUID(run.id),
                status="failed",
                run_at=tx.now,
                deliveries=25,
                rescues=0,
                inserted_at=tx.now,
                updated_at=tx.now,
            )
        )
    clock.advance(2 * DAY)
    assert client.purge_runs(older_than=DAY).runs == 0


def test_a_run_with_an_unpublished_outbox_message_is_kept(client: Client, clock: FakeClock) -> None:
    run_id = started(client, "done", status="completed")
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.insert(schema.outbox).values(
                destination="squidmesh.step",
                payload={},
                run_id=uuid.UUID(run_id),
                publish_at=tx.now,
                attempts=0,
                inserted_at=tx.now,
            )
        )
    clock.advance(2 * DAY)
    assert client.purge_runs(older_than=DAY).runs == 0
    with client.runtime.transaction() as tx:
        tx.connection.execute(sa.delete(schema.outbox))
    assert client.purge_runs(older_than=DAY).runs == 1


def test_a_replay_of_a_purged_run_goes_on_unlinked(client: Client, clock: FakeClock) -> None:
    original = started(client, "failing", status="failed")
    clock.advance(2 * DAY)
    replay = client.replay_run(original)
    assert replay.replayed_from_run_id == original

    assert client.purge_runs(older_than=DAY).runs == 1

    kept = client.inspect_run(replay.id)
    assert kept.replayed_from_run_id is None
    drain(client)
    assert client.inspect_run(replay.id).status == "failed"


def test_a_cron_run_keeps_its_window_for_a_week(client: Client, clock: FakeClock) -> None:
    first = client.start_cron_trigger("nightly", "tick", {"intended_window": WINDOW})
    drain(client)
    assert client.inspect_run(first.run.id).status == "completed"
    clock.advance(2 * DAY)

    # Older than a day, but it holds the window's key: a late activation finds it.
    assert client.purge_runs(older_than=DAY).runs == 0
    again = client.start_cron_trigger("nightly", "tick", {"intended_window": WINDOW})
    assert (again.outcome, again.run.id) == ("duplicate", first.run.id)

    clock.advance(6 * DAY)
    assert client.purge_runs(older_than=DAY).runs == 1


def test_a_run_started_with_an_idempotency_key_keeps_it_for_a_week(
    client: Client, clock: FakeClock
) -> None:
    keyed = client.start_run("done", idempotency_key="order-7")
    plain = client.start_run("done")
    drain(client)
    clock.advance(2 * DAY)

    # Both are older than a day; only the one without a key goes: a retried start still finds
    # the other.
    assert client.purge_runs(older_than=DAY, dry_run=True).run_ids == (plain.id,)
    assert client.purge_runs(older_than=DAY).runs == 1
    again = client.start("done", idempotency_key="order-7")
    assert (again.created, again.id) == (False, keyed.id)

    clock.advance(6 * DAY)
    assert client.purge_runs(older_than=DAY).runs == 1
    # Its key went with it: the same key starts a new run.
    fresh = client.start("done", idempotency_key="order-7")
    assert fresh.created
    assert fresh.id != keyed.id


def _abandoned_child(client: Client) -> tuple[str, str]:
    """A cancelled parent and its child, left paused on its own (``on_parent_close="abandon"``)."""
    run = client.start_run("parent")
    drain(client)
    (link,) = client.inspect_run(run.id, include_history=True).children or ()
    assert client.inspect_run(link.child_run_id).status == "paused"
    assert client.cancel_run(run.id).status == "cancelled"
    assert client.inspect_run(link.child_run_id).status == "paused"
    return run.id, link.child_run_id


def test_a_parent_is_kept_until_its_abandoned_child_finished(
    client: Client, clock: FakeClock
) -> None:
    # The child reads its parent when it finishes: purged before, the parent's absence failed
    # every delivery of the child's last step.
    parent_id, child_id = _abandoned_child(client)
    clock.advance(31 * DAY)
    assert client.purge_runs(older_than=30 * DAY).runs == 0
    client.unblock_run(child_id)
    drain(client)
    assert client.inspect_run(child_id).status == "completed"
    assert client.inspect_run(parent_id).status == "cancelled"
    clock.advance(31 * DAY)
    purged = client.purge_runs(older_than=30 * DAY, dry_run=True)
    assert sorted(purged.run_ids) == sorted([parent_id, child_id])


def test_a_child_whose_parent_is_gone_still_finishes(client: Client) -> None:
    # A host that deleted the parent's rows itself: the child's end reaches no one, as after
    # its parent closed, instead of failing its last step's every delivery.
    parent_id, child_id = _abandoned_child(client)
    key = uuid.UUID(parent_id)
    with client.runtime.transaction() as tx:
        steps = sa.select(schema.step_runs.c.id).where(schema.step_runs.c.run_id == key)
        tx.connection.execute(
            sa.delete(schema.attempts).where(
                schema.attempts.c.step_run_id.in_(steps.scalar_subquery())
            )
        )
        for table in (schema.step_runs, schema.run_events, schema.jobs, schema.outbox):
            tx.connection.execute(sa.delete(table).where(table.c.run_id == key))
        tx.connection.execute(sa.delete(schema.runs).where(schema.runs.c.id == key))
    client.unblock_run(child_id)
    drain(client)
    assert client.inspect_run(child_id).status == "completed"
