"""An outcome the database cannot take fails the step once; it is never taken for a dead worker.

Before, on PostgreSQL, a NaN output made the outcome write raise ``DataError``; the job was
redelivered as if its worker had died (``worker_lost``), the body ran again and again, and the
run stayed ``running``. Now such values are refused before the write (``StepOutputError``), and
any other database refusal of the outcome write (here a trigger of the test's own) fails the
step with ``OutcomeNotStored``, recorded in a fresh transaction after the refused one rolled
back whole.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, Retry, StepContext, Worker, Workflow
from squidmesh_sdk import manual as manual_trigger
from squidmesh_sdk.store import jobs as job_store
from tests.integration.worker.conftest import attempts_by_step, settled, wait_until

ledger = sa.Table("test_ledger", sa.MetaData(), sa.Column("entry", sa.String, primary_key=True))

_SQLITE_TRIGGER = """
CREATE TRIGGER refuse_outputs BEFORE UPDATE OF output ON squidmesh_step_runs
WHEN json_extract(NEW.output, '$.refuse') IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'outputs with "refuse" are refused'); END
"""
_PG_FUNCTION = """
CREATE FUNCTION refuse_outputs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.output ? 'refuse' THEN
        RAISE EXCEPTION 'outputs with "refuse" are refused';
    END IF;
    RETURN NEW;
END $$
"""
_PG_TRIGGER = """
CREATE TRIGGER refuse_outputs BEFORE UPDATE OF output ON squidmesh_step_runs
FOR EACH ROW EXECUTE FUNCTION refuse_outputs()
"""


def _workflow(calls: list[str], output: dict[str, Any], *, transaction: bool) -> Workflow:
    wf = Workflow("emit", triggers=[manual_trigger("go", payload=None)])

    @wf.step(retry=Retry(max_attempts=3), transaction=transaction)
    def produce(ctx: StepContext) -> dict[str, Any]:
        calls.append(ctx.run_id)
        if ctx.connection is not None:
            ctx.connection.execute(ledger.insert(), {"entry": f"{ctx.run_id}-{ctx.attempt}"})
        return output

    @wf.step
    def after() -> None:
        calls.append("after")

    wf.chain(produce, after, COMPLETE)
    return wf


@pytest.fixture
def refusing_database(database_url: str) -> str:
    """The test's database, with a trigger that refuses step outputs holding a ``refuse`` key."""
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        ledger.create(connection)
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql(_SQLITE_TRIGGER)
        else:
            connection.exec_driver_sql(_PG_FUNCTION)
            connection.exec_driver_sql(_PG_TRIGGER)
    engine.dispose()
    return database_url


def _run_to_the_end(client: Client) -> tuple[Any, list[str], list[job_store.Job]]:
    run = client.start_run("emit")
    with Worker(client, poll_interval=0.02):
        wait_until(settled(client, [run]), timeout=30, what="the run to finish")
    with client.database.read() as connection:
        jobs = job_store.list_jobs(connection)
    finished = client.inspect_run(run.id, include_history=True)
    return finished, attempts_by_step(client, run.id)["produce"], jobs


def test_a_nan_output_fails_the_step_once_under_a_worker(database_url: str) -> None:
    calls: list[str] = []
    wf = _workflow(calls, {"price": math.nan}, transaction=False)
    with Client(database_url, [wf], executor=DatabaseExecutor()) as client:
        run, attempts, jobs = _run_to_the_end(client)
    assert (run.status, run.current_step, attempts, jobs) == ("failed", "produce", ["failed"], [])
    assert len(calls) == 1
    assert run.last_error["kind"] == "output_invalid"
    assert run.last_error["details"] == {"path": "$.price"}


@pytest.mark.parametrize("transaction", [False, True], ids=["plain", "transaction"])
def test_a_database_refusing_the_outcome_write_fails_the_step_once(
    refusing_database: str, transaction: bool
) -> None:
    calls: list[str] = []
    wf = _workflow(calls, {"refuse": True}, transaction=transaction)
    with Client(refusing_database, [wf], executor=DatabaseExecutor()) as client:
        run, attempts, jobs = _run_to_the_end(client)
        with client.database.read() as connection:
            entries = connection.execute(sa.select(ledger.c.entry)).scalars().all()
    assert (run.status, run.current_step, attempts, jobs) == ("failed", "produce", ["failed"], [])
    assert calls == [run.id], "the body ran once and the run did not move on"
    error = run.last_error
    assert (error["kind"], error["code"], error["retryable"]) == (
        "outcome_not_stored",
        "outcome_not_stored",
        False,
    )
    assert error["step"] == "produce"
    assert "the database refused to record its outcome" in error["message"]
    assert 'outputs with "refuse" are refused' in error["message"]
    assert error["cause"]["message"].startswith('outputs with "refuse" are refused')
    step_run = run.step_run("produce")
    assert step_run is not None
    assert (step_run.status, step_run.output) == ("failed", None)
    assert entries == [], "the step's own writes rolled back with the refused outcome"
