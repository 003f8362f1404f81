"""Client.wait_for_run: the finished run, woken by the database, or a clean timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    InvalidArgument,
    InvalidRunId,
    NonRetryableError,
    Run,
    RunNotFound,
    RunWaitTimeout,
    Worker,
    Workflow,
    manual,
)
from squidmesh_sdk.runtime import watcher
from squidmesh_sdk.store.runs import RUN_CHANNEL, WATCHER_APPLICATION_NAME
from tests.integration.runtime.conftest import MakeEnv

GATES: dict[str, threading.Event] = {}


class Gate(BaseModel):
    gate: str


gated = Workflow("gated", triggers=[manual("go", payload=Gate)])


@gated.step
def hold(gate: str) -> dict[str, str]:
    """Runs until the test opens its gate (a run that finishes when the test says so)."""
    if not GATES[gate].wait(timeout=30):
        raise NonRetryableError("the test never opened the gate")
    return {"passed": gate}


gated.chain(hold, COMPLETE)

failing = Workflow("failing", triggers=[manual("go")])


@failing.step
def explode() -> dict[str, Any]:
    raise NonRetryableError("boom")


failing.chain(explode, COMPLETE)

holding = Workflow("holding", triggers=[manual("hold")])
holding.chain(holding.pause("hold", output="hold"), COMPLETE)

WORKFLOWS = [gated, failing, holding]


@pytest.fixture
def gate() -> Iterator[str]:
    name = f"gate-{len(GATES)}"
    GATES[name] = threading.Event()
    yield name
    GATES.pop(name).set()


@pytest.fixture
def waiter(database_url: str) -> Iterator[Client]:
    """A client that starts and waits for runs; it runs no step itself (no worker)."""
    with Client(database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()) as client:
        yield client


@pytest.fixture
def worker_client(database_url: str) -> Iterator[Client]:
    """Another client on the same database, as a worker process would have."""
    with Client(database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()) as client:
        yield client


def run_reads(client: Client) -> list[float]:
    """The times of every statement that reads ``squidmesh_runs`` through ``client``."""
    reads: list[float] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM squidmesh_runs" in statement and statement.lstrip().upper().startswith("SELECT"):
            reads.append(time.monotonic())

    sa.event.listen(client.database.engine, "before_cursor_execute", count)
    return reads


def wait_in_thread(client: Client, run_id: str, **options: Any) -> dict[str, Any]:
    """Start ``client.wait_for_run`` on a thread; the dict gets ``run`` and ``at`` (UTC)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["run"] = client.wait_for_run(run_id, **options)
        except BaseException as exc:  # noqa: BLE001 - asserted by the test
            result["error"] = exc
        result["at"] = datetime.now(UTC)

    result["thread"] = threading.Thread(target=target)
    result["thread"].start()
    return result


def finished(result: dict[str, Any]) -> Run:
    result["thread"].join(timeout=30)
    assert "error" not in result, result.get("error")
    run: Run = result["run"]
    return run


def test_a_finished_run_is_returned_at_once_with_its_history(make_env: MakeEnv) -> None:
    env = make_env(*WORKFLOWS)
    run = env.client.start_run(failing)  # the in-process executor finishes it here
    began = time.monotonic()
    done = env.client.wait_for_run(run.id, timeout=5, include_history=True)
    assert time.monotonic() - began < 1
    assert done.status == "failed"  # returned, not raised: the caller reads the outcome
    assert done.last_error is not None
    assert done.last_error["message"] == "boom"
    assert [step_run.step for step_run in done.step_runs or ()] == ["explode"]
    plain = env.client.wait_for_run(run.id)
    assert plain.step_runs is None


def test_a_cancelled_run_is_returned(make_env: MakeEnv) -> None:
    env = make_env(*WORKFLOWS)
    run = env.client.start_run(holding)
    assert env.client.inspect_run(run.id).status == "paused"
    result = wait_in_thread(env.client, run.id, timeout=10)
    env.client.cancel_run(run.id, reason="no longer needed")
    assert finished(result).status == "cancelled"


def test_a_timeout_raises_and_the_run_goes_on(waiter: Client) -> None:
    run = waiter.start_run(gated, {"gate": "never"})
    began = time.monotonic()
    with pytest.raises(RunWaitTimeout) as raised:
        waiter.wait_for_run(run.id, timeout=0.3)
    waited = time.monotonic() - began
    assert 0.3 <= waited < 1.5
    error = raised.value
    assert isinstance(error, TimeoutError)
    assert (error.code, error.run_id, error.timeout, error.status) == (
        "run_wait_timeout",
        run.id,
        0.3,
        "pending",
    )
    assert str(error) == (
        f"run {run.id} is still pending after waiting 0.3s; it goes on, wait again or cancel it"
    )
    assert waiter.inspect_run(run.id).status == "pending"


@pytest.mark.parametrize("timeout", [0, 0.0, timedelta(0)], ids=["0", "0.0", "timedelta(0)"])
def test_a_zero_timeout_looks_once(waiter: Client, timeout: object) -> None:
    run = waiter.start_run(gated, {"gate": "never"})
    began = time.monotonic()
    with pytest.raises(RunWaitTimeout):
        waiter.wait_for_run(run.id, timeout=timeout)  # type: ignore[arg-type]
    assert time.monotonic() - began < 0.5


def test_a_timedelta_timeout_is_seconds(waiter: Client) -> None:
    run = waiter.start_run(gated, {"gate": "never"})
    with pytest.raises(RunWaitTimeout) as raised:
        waiter.wait_for_run(run.id, timeout=timedelta(milliseconds=200))
    assert raised.value.timeout == 0.2


@pytest.mark.parametrize(
    "timeout",
    [-1, -0.001, float("nan"), float("inf"), "5", True, timedelta(seconds=-1), [1]],
    ids=["-1", "-0.001", "nan", "inf", "str", "bool", "negative timedelta", "list"],
)
def test_a_bad_timeout_is_refused(waiter: Client, timeout: object) -> None:
    run = waiter.start_run(gated, {"gate": "never"})
    with pytest.raises(InvalidArgument) as raised:
        waiter.wait_for_run(run.id, timeout=timeout)  # type: ignore[arg-type]
    assert raised.value.argument == "timeout"
    assert "timeout must be None or a finite number of seconds >= 0" in str(raised.value)


def test_an_unknown_or_malformed_run_id_is_refused(waiter: Client) -> None:
    with pytest.raises(InvalidRunId):
        waiter.wait_for_run("not-a-uuid", timeout=1)
    missing = "0190e3a4-0000-7000-8000-000000000000"
    with pytest.raises(RunNotFound) as raised:
        waiter.wait_for_run(missing, timeout=1)
    assert raised.value.run_id == missing


def test_another_process_finishing_the_run_wakes_the_waiter(
    waiter: Client, worker_client: Client, gate: str, database_url: str
) -> None:
    """PostgreSQL: the NOTIFY at commit wakes it within 100 ms, without polling in between.

    SQLite: nothing can notify across processes; it looks at the run at most every 0.5 s.
    """
    postgres = database_url.startswith("postgresql")
    run = waiter.start_run(gated, {"gate": gate})
    reads = run_reads(waiter)
    with Worker(worker_client, concurrency=1, poll_interval=0.05):
        began = time.monotonic()
        result = wait_in_thread(waiter, run.id, timeout=30)
        time.sleep(2.0)  # the step runs; the waiter waits
        settled = [at for at in reads if at > began + 0.75]  # after the first looks
        looks = len(reads)
        GATES[gate].set()
        done = finished(result)
    assert done.status == "completed"
    assert done.context == {"passed": gate}
    latency = (result["at"] - done.updated_at).total_seconds()
    if postgres:
        assert latency < 0.1, latency
        # A first look, the looks when the listening connection came up, and then none:
        # nothing polls while the run goes on.
        assert looks <= 5, reads
        assert settled == [], reads
    else:
        assert latency < watcher.MAX_POLL + 0.25, latency
        # 50 ms, then twice as long each time, up to every 0.5 s.
        assert 4 <= looks <= 12, reads
        assert 2 <= len(settled) <= 4, reads


def test_the_waiters_own_client_finishing_the_run_wakes_it_at_once(
    database_url: str, gate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polls so slow that only the client's own wake-up can end the wait in time.
    monkeypatch.setattr(watcher, "FIRST_POLL", 20.0)
    monkeypatch.setattr(watcher, "MAX_POLL", 20.0)
    with Client(database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()) as client:
        run = client.start_run(gated, {"gate": gate})
        with Worker(client, concurrency=1, poll_interval=0.05):
            result = wait_in_thread(client, run.id, timeout=30)
            time.sleep(0.3)
            GATES[gate].set()
            done = finished(result)
    assert done.status == "completed"
    assert (result["at"] - done.updated_at).total_seconds() < 0.1


@pytest.fixture
def pg_clients(postgres_database_url: str) -> Iterator[tuple[Client, Client]]:
    """A waiter and a worker's client on a PostgreSQL database."""
    with (
        Client(postgres_database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()) as one,
        Client(postgres_database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()) as two,
    ):
        yield one, two


@pytest.mark.postgres
def test_postgres_notifies_once_when_a_run_finishes_and_never_before(
    pg_clients: tuple[Client, Client], gate: str, postgres_database_url: str
) -> None:
    waiter, worker_client = pg_clients
    url = sa.make_url(postgres_database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as listener:
        listener.execute(f"SET application_name = '{WATCHER_APPLICATION_NAME}'")
        listener.execute(f"LISTEN {RUN_CHANNEL}")
        run = waiter.start_run(gated, {"gate": gate})
        paused = waiter.start_run(holding)
        with Worker(worker_client, concurrency=2, poll_interval=0.05):
            time.sleep(0.5)  # started, running, paused: no notification for any of it
            before = [n.payload for n in listener.notifies(timeout=0.2)]
            GATES[gate].set()
            waiter.wait_for_run(run.id, timeout=10)
            waiter.cancel_run(paused.id)
        after = [n.payload for n in listener.notifies(timeout=0.5)]
    assert before == []
    assert after == [run.id, paused.id]


@pytest.mark.postgres
def test_postgres_notifies_nothing_while_no_client_listens(
    pg_clients: tuple[Client, Client], postgres_database_url: str
) -> None:
    """Workers that nobody waits on pay nothing: a NOTIFY serialises the commits carrying one."""
    waiter, _ = pg_clients
    url = sa.make_url(postgres_database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as spy:
        spy.execute(f"LISTEN {RUN_CHANNEL}")  # listens, but is not a run watcher
        run = waiter.start_run(holding)
        waiter.cancel_run(run.id)
        assert [n.payload for n in spy.notifies(timeout=0.5)] == []
        # A waiter's watcher connects: from then on, finished runs are announced.
        another = waiter.start_run(holding)
        result = wait_in_thread(waiter, another.id, timeout=10)
        deadline = time.monotonic() + 10
        while not waiter.watcher.listening:
            assert time.monotonic() < deadline, "the watcher never listened"
            time.sleep(0.02)
        waiter.cancel_run(another.id)
        assert finished(result).status == "cancelled"
        assert [n.payload for n in spy.notifies(timeout=0.5)] == [another.id]


@pytest.mark.postgres
def test_a_run_watcher_of_another_database_does_not_make_this_one_announce_runs(
    pg_clients: tuple[Client, Client], postgres_database_url: str, postgres_server_url: sa.URL
) -> None:
    """Only a watcher of the run's own database counts: one elsewhere cannot hear a NOTIFY."""
    waiter, _ = pg_clients
    url = sa.make_url(postgres_database_url).set(drivername="postgresql")
    elsewhere = postgres_server_url.set(drivername="postgresql")
    with (
        psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as spy,
        psycopg.connect(elsewhere.render_as_string(hide_password=False)) as watcher_elsewhere,
    ):
        watcher_elsewhere.execute(f"SET application_name = '{WATCHER_APPLICATION_NAME}'")
        watcher_elsewhere.commit()
        spy.execute(f"LISTEN {RUN_CHANNEL}")
        run = waiter.start_run(holding)
        waiter.cancel_run(run.id)
        assert [n.payload for n in spy.notifies(timeout=0.5)] == []
        # The same connection's name on this database: now the end of a run is announced.
        spy.execute(f"SET application_name = '{WATCHER_APPLICATION_NAME}'")
        another = waiter.start_run(holding)
        waiter.cancel_run(another.id)
        assert [n.payload for n in spy.notifies(timeout=0.5)] == [another.id]


@pytest.mark.postgres
def test_a_lost_listening_connection_does_not_strand_the_waiter(
    pg_clients: tuple[Client, Client], gate: str
) -> None:
    waiter, worker_client = pg_clients
    run = waiter.start_run(gated, {"gate": gate})
    with Worker(worker_client, concurrency=1, poll_interval=0.05):
        result = wait_in_thread(waiter, run.id, timeout=30)
        deadline = time.monotonic() + 10
        while not waiter.watcher.listening:
            assert time.monotonic() < deadline, "the watcher never listened"
            time.sleep(0.02)
        with waiter.database.engine.connect() as connection:
            killed = connection.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = :listen"
                ),
                {"listen": f"LISTEN {RUN_CHANNEL}"},
            )
            connection.commit()
        assert killed == 1
        GATES[gate].set()
        done = finished(result)
    assert done.status == "completed"
    assert (result["at"] - done.updated_at).total_seconds() < 2
