"""Cron triggers: one run per window, DST-correct, safe under many workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, Field

from samples import daily_digest
from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    InvalidSchedule,
    InvalidTrigger,
    MissingScheduleIdempotencyKey,
    StepContext,
    Worker,
    Workflow,
    cron,
    manual,
    today,
)
from squidmesh_sdk.executors.scheduler import CronScheduler
from squidmesh_sdk.port.delivery import Delivery
from squidmesh_sdk.runtime import runner
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.testing import FakeClock


class Report(BaseModel):
    day: date = Field(default_factory=today)


def scheduled(name: str, expression: str, zone: str, idempotency: Any = None) -> Workflow:
    wf = Workflow(
        name,
        triggers=[
            cron("tick", expression, timezone=zone, payload=Report, idempotency=idempotency),
            manual("by_hand", payload=Report),
        ],
    )

    @wf.step
    def record(day: date, ctx: StepContext) -> dict[str, Any]:
        return {
            "seen": {"day": day.isoformat(), "schedule": dict(ctx.schedule or {})},
            "schedule": "an output cannot replace the schedule",
        }

    wf.chain(record, COMPLETE)
    return wf


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def make_client(database_url: str, clock: FakeClock) -> Iterator[Any]:
    clients: list[Client] = []

    def make(*workflows: Workflow) -> Client:
        client = Client(database_url, workflows, executor=DatabaseExecutor(), clock=clock)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def deliver_all(client: Client) -> list[str]:
    """Perform every due job, as a worker would, without threads; return the outcomes."""
    outcomes = []
    while True:
        with client.runtime.transaction() as tx:
            jobs = claim_store.claim(tx, worker="test", queues=["default"], limit=50, lease=30)
        if not jobs:
            return outcomes
        for job in jobs:
            delivery = Delivery(
                settle=lambda tx, job_id=job.id: job_store.complete(tx, job_id, worker="test")
            )
            outcomes.append(runner.perform(client.runtime, job.payload, delivery=delivery))
            assert delivery.settled


def cron_runs(client: Client, workflow: str) -> list[Any]:
    runs = [r for r in client.list_runs(workflow=workflow, limit=1000) if r.trigger == "tick"]
    return sorted(runs, key=lambda r: r.context["schedule"]["intended_window"]["start_at"])


def run_schedule(
    client: Client, scheduler: CronScheduler, clock: FakeClock, until: datetime, step: float
) -> None:
    while clock.now() < until:
        clock.advance(step)
        scheduler.tick()
        deliver_all(client)


@pytest.mark.parametrize(
    ("zone", "expression", "days", "expected_local"),
    [
        # Spring forward: 02:30 does not exist on 2026-03-29 in Berlin; it fires at 03:00.
        (
            "Europe/Berlin",
            "30 2 * * *",
            ("2026-03-28", "2026-03-29", "2026-03-30"),
            ["02:30:00+01:00", "03:00:00+02:00", "02:30:00+02:00"],
        ),
        # Fall back: 01:30 happens twice on 2026-11-01 in New York; it fires once.
        (
            "America/New_York",
            "30 1 * * *",
            ("2026-10-31", "2026-11-01", "2026-11-02"),
            ["01:30:00-04:00", "01:30:00-04:00", "01:30:00-05:00"],
        ),
    ],
)
def test_a_daily_job_fires_exactly_once_per_day_across_dst_changes(
    make_client: Any,
    clock: FakeClock,
    zone: str,
    expression: str,
    days: tuple[str, ...],
    expected_local: list[str],
) -> None:
    wf = scheduled("daily", expression, zone)
    client = make_client(wf)
    client.migrate()
    tz = ZoneInfo(zone)
    first_day = datetime.fromisoformat(days[0]).replace(tzinfo=tz)
    clock.set((first_day - timedelta(hours=12)).astimezone(UTC))
    scheduler = CronScheduler(client.runtime)
    scheduler.tick()  # starts tracking: nothing fires yet
    run_schedule(client, scheduler, clock, first_day + timedelta(days=3), step=600)
    runs = cron_runs(client, "daily")
    starts = [
        datetime.fromisoformat(r.context["schedule"]["intended_window"]["start_at"]).astimezone(tz)
        for r in runs
    ]
    assert [s.date().isoformat() for s in starts] == list(days)
    assert [s.isoformat()[11:] for s in starts] == expected_local
    assert {r.status for r in runs} == {"completed"}


def test_two_workers_racing_for_one_window_start_one_run(
    make_client: Any, clock: FakeClock
) -> None:
    wf = scheduled("hourly", "0 * * * *", "Etc/UTC")
    first, second = make_client(wf), make_client(wf)
    first.migrate()
    clock.set(datetime(2026, 3, 27, 12, 30, tzinfo=UTC))
    schedulers = [CronScheduler(first.runtime), CronScheduler(second.runtime)]
    for scheduler in schedulers:
        scheduler.tick()
    clock.set(datetime(2026, 3, 27, 13, 0, 5, tzinfo=UTC))
    barrier = threading.Barrier(2)
    queued: list[int] = []

    def tick(scheduler: CronScheduler) -> None:
        barrier.wait()
        queued.append(scheduler.tick())

    threads = [threading.Thread(target=tick, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(queued) == [0, 1]
    deliver_all(first)
    (run,) = cron_runs(first, "hourly")
    assert run.context["schedule"]["intended_window"] == {
        "start_at": "2026-03-27T13:00:00+00:00",
        "end_at": "2026-03-27T14:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("policy", "expected_starts"),
    [
        ("latest", ["17:00"]),
        ("all", ["13:00", "14:00", "15:00", "16:00", "17:00"]),
        ("none", []),
    ],
)
def test_catch_up_policy_after_an_outage(
    make_client: Any, clock: FakeClock, policy: Any, expected_starts: list[str]
) -> None:
    client = make_client(scheduled("hourly", "0 * * * *", "Etc/UTC"))
    client.migrate()
    clock.set(datetime(2026, 3, 27, 12, 30, tzinfo=UTC))
    scheduler = CronScheduler(client.runtime, catch_up=policy)
    scheduler.tick()
    clock.set(datetime(2026, 3, 27, 17, 20, tzinfo=UTC))  # five windows passed unattended
    scheduler.tick()
    deliver_all(client)
    starts = [
        r.context["schedule"]["intended_window"]["start_at"][11:16]
        for r in cron_runs(client, "hourly")
    ]
    assert starts == expected_starts
    clock.set(datetime(2026, 3, 27, 18, 0, 1, tzinfo=UTC))
    assert scheduler.tick() == 1, "after catching up, the next window fires normally"


WINDOW = {"start_at": "2026-03-27T13:00:00+00:00", "end_at": "2026-03-27T14:00:00+00:00"}


@pytest.mark.parametrize(
    ("idempotency", "second_outcome"),
    [("return_existing_run", "duplicate"), ("skip_duplicate", "skipped")],
)
def test_duplicate_deliveries_return_the_existing_run_or_skip(
    make_client: Any, idempotency: Any, second_outcome: str
) -> None:
    client = make_client(scheduled("once", "0 * * * *", "Etc/UTC", idempotency))
    client.migrate()
    first = client.start_cron_trigger("once", "tick", {"intended_window": WINDOW})
    again = client.start_cron_trigger("once", "tick", {"intended_window": WINDOW})
    assert (first.outcome, again.outcome) == ("started", second_outcome)
    assert again.run.id == first.run.id
    assert len(client.list_runs()) == 1
    schedule = first.run.context["schedule"]
    assert schedule["signal_id"].startswith("sha256:")
    assert len(schedule["signal_id"]) == len("sha256:") + 43
    assert schedule["idempotency"] == idempotency
    assert schedule["idempotency_key"] == schedule["signal_id"]
    with client.runtime.transaction() as tx:
        client.executor.enqueue_cron(tx, "once", "tick", signal={"intended_window": WINDOW})
    assert deliver_all(client)[-1] == second_outcome


def test_without_idempotency_each_delivery_starts_a_run(make_client: Any) -> None:
    client = make_client(scheduled("every", "0 * * * *", "Etc/UTC"))
    client.migrate()
    outcomes = [
        client.start_cron_trigger("every", "tick", {"intended_window": WINDOW}).outcome
        for _ in range(2)
    ]
    assert outcomes == ["started", "started"]
    assert len(client.list_runs()) == 2


@pytest.mark.parametrize(
    ("signal", "problem"),
    [
        ({"signal_id": ""}, "signal_id must be a non-empty string"),
        ({"signal_id": 42}, "signal_id must be a non-empty string"),
        ({"intended_window": "today"}, "intended_window must be a mapping"),
        ({"intended_window": {"start_at": "2026-03-27T13:00:00"}}, "with an offset"),
        (
            {"intended_window": {"start_at": WINDOW["end_at"], "end_at": WINDOW["start_at"]}},
            "must be before",
        ),
    ],
)
def test_invalid_schedule_identities_start_nothing(
    make_client: Any, signal: dict[str, Any], problem: str
) -> None:
    client = make_client(scheduled("strict", "0 * * * *", "Etc/UTC"))
    client.migrate()
    with pytest.raises(InvalidSchedule, match=problem):
        client.start_cron_trigger("strict", "tick", signal)
    assert client.list_runs() == []


def test_an_idempotent_trigger_needs_an_identity(make_client: Any) -> None:
    client = make_client(scheduled("strict", "0 * * * *", "Etc/UTC", "skip_duplicate"))
    client.migrate()
    with pytest.raises(MissingScheduleIdempotencyKey, match="needs a signal_id") as raised:
        client.start_cron_trigger("strict", "tick")
    assert raised.value.code == "missing_schedule_idempotency_key"
    assert raised.value.missing == ("signal_id", "intended_window")
    assert isinstance(raised.value, InvalidSchedule)
    started = client.start_cron_trigger("strict", "tick", {"signal_id": "scheduler-7"})
    assert started.run.context["schedule"]["signal_id"] == "scheduler-7"
    with pytest.raises(InvalidTrigger):
        client.start_cron_trigger("strict", "by_hand")
    assert len(client.list_runs()) == 1


def test_steps_read_the_schedule_and_cannot_overwrite_it(
    make_client: Any, clock: FakeClock
) -> None:
    client = make_client(scheduled("read", "0 * * * *", "Etc/UTC"))
    client.migrate()
    started = client.start_cron_trigger("read", "tick", {"intended_window": WINDOW})
    deliver_all(client)
    run = client.inspect_run(started.run.id)
    assert run.status == "completed"
    schedule = run.context["schedule"]
    assert schedule["intended_window"] == WINDOW
    assert schedule["received_at"] == clock.now().replace(microsecond=0).isoformat()
    assert schedule["cron_expression"] == "0 * * * *"
    assert run.context["seen"]["schedule"] == schedule
    assert run.payload == {"day": clock.now().date().isoformat()}  # from defaults only


def test_replay_keeps_the_schedule_without_its_idempotency_key(make_client: Any) -> None:
    client = make_client(scheduled("replayed", "0 * * * *", "Etc/UTC", "return_existing_run"))
    client.migrate()
    started = client.start_cron_trigger("replayed", "tick", {"intended_window": WINDOW})
    deliver_all(client)
    replay = client.replay_run(started.run.id)
    schedule = replay.context["schedule"]
    assert schedule["intended_window"] == WINDOW
    assert "idempotency" not in schedule
    assert "idempotency_key" not in schedule
    again = client.start_cron_trigger("replayed", "tick", {"intended_window": WINDOW})
    assert (again.outcome, again.run.id) == ("duplicate", started.run.id)


def test_the_daily_digest_sample_runs_from_its_cron_defaults(
    make_client: Any, clock: FakeClock
) -> None:
    client = make_client(daily_digest.workflow)
    client.migrate()
    started = client.start_cron_trigger("daily_digest", "daily_digest")
    deliver_all(client)
    run = client.inspect_run(started.run.id)
    assert run.payload == {"channel": "ops", "digest_date": clock.now().date().isoformat()}
    assert run.status == "completed"


def test_a_worker_schedules_cron_triggers(make_client: Any, clock: FakeClock) -> None:
    client = make_client(scheduled("worked", "* * * * *", "Etc/UTC"))
    client.migrate()
    clock.set(datetime(2026, 3, 27, 12, 0, 30, tzinfo=UTC))
    pause = threading.Event()  # never set: only its wait() is used, to let the worker run
    with Worker(client, poll_interval=0.02):
        for _ in range(3000):
            if client.list_runs():
                break
            clock.advance(0.1)
            pause.wait(0.01)
        for _ in range(3000):
            runs = client.list_runs()
            if runs and all(r.terminal for r in runs):
                break
            pause.wait(0.01)
    runs = client.list_runs()
    assert len(runs) >= 1
    assert runs[-1].context["schedule"]["intended_window"]["start_at"] == (
        "2026-03-27T12:01:00+00:00"
    )
    assert {r.status for r in runs} == {"completed"}


@pytest.mark.parametrize("bound", ["start_at", "end_at"])
def test_a_window_with_one_bound_starts_the_run_without_a_derived_id(
    make_client: Any, bound: str
) -> None:
    client = make_client(scheduled("partial", "0 * * * *", "Etc/UTC"))
    client.migrate()
    given = {bound: "2026-03-27T15:00:00+02:00"}
    started = client.start_cron_trigger("partial", "tick", {"intended_window": given})
    assert started.outcome == "started"
    deliver_all(client)
    run = client.inspect_run(started.run.id)
    assert run.status == "completed"
    schedule = run.context["schedule"]
    assert schedule["intended_window"] == {bound: "2026-03-27T13:00:00+00:00"}
    assert "signal_id" not in schedule
    assert "idempotency_key" not in schedule
    # Through the queue, as a host scheduler's job is delivered.
    with client.runtime.transaction() as tx:
        client.executor.enqueue_cron(tx, "partial", "tick", signal={"intended_window": given})
    assert deliver_all(client) == ["started", "executed"]
    assert len(client.list_runs(workflow="partial")) == 2


def test_an_idempotent_trigger_with_one_bound_needs_a_signal_id_and_says_what_is_missing(
    make_client: Any,
) -> None:
    client = make_client(scheduled("strict", "0 * * * *", "Etc/UTC", "return_existing_run"))
    client.migrate()
    half = {"intended_window": {"start_at": WINDOW["start_at"]}}
    with pytest.raises(MissingScheduleIdempotencyKey, match=r"intended_window\.end_at") as raised:
        client.start_cron_trigger("strict", "tick", half)
    assert raised.value.missing == ("signal_id", "intended_window.end_at")
    assert client.list_runs() == []
    first = client.start_cron_trigger("strict", "tick", {**half, "signal_id": "host-1"})
    again = client.start_cron_trigger("strict", "tick", {**half, "signal_id": "host-1"})
    assert (first.outcome, again.outcome) == ("started", "duplicate")
    assert again.run.id == first.run.id
    schedule = first.run.context["schedule"]
    assert schedule["intended_window"] == {"start_at": WINDOW["start_at"]}
    assert schedule["idempotency_key"] == "host-1"
