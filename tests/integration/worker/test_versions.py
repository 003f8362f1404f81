"""Runs are pinned to their definition version; workers claim only the jobs they can run."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    DefinitionError,
    DefinitionUnavailable,
    Worker,
    Workflow,
    manual,
)
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import schema
from tests.integration.worker.conftest import settled, wait_until

Calls = list[tuple[str, str]]


def order(version: str | None, calls: Calls, *, second: str = "ship") -> Workflow:
    """Two steps, ``reserve`` then ``second``; each body records (version, step)."""
    workflow = Workflow("order", triggers=[manual("start")], version=version)
    label = version or "unversioned"

    @workflow.step
    def reserve() -> dict[str, str]:
        calls.append((label, "reserve"))
        return {}

    @workflow.step(name=second, after=[reserve])
    def finish() -> dict[str, str]:
        calls.append((label, second))
        return {}

    return workflow


def invoice(calls: Calls) -> Workflow:
    workflow = Workflow("invoice", triggers=[manual("start")])

    @workflow.step
    def send() -> dict[str, str]:
        calls.append(("invoice", "send"))
        return {}

    workflow.transition(send, on="ok", to=COMPLETE)
    return workflow


def client_for(database_url: str, *workflows: Workflow) -> Client:
    return Client(database_url, workflows, executor=DatabaseExecutor())


def jobs(client: Client) -> list[job_store.Job]:
    with client.database.read() as connection:
        return job_store.list_jobs(connection)


def stays(condition: Callable[[], bool], seconds: float = 1.0) -> bool:
    """Whether ``condition`` holds throughout ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.05)
    return True


def test_a_run_keeps_its_version_on_a_worker_holding_two(database_url: str) -> None:
    calls: Calls = []
    with client_for(database_url, order("1", calls)) as old:
        run = old.start_run("order")
    assert run.definition_version == "1"
    new = client_for(database_url, order("1", calls), order("2", calls, second="deliver"))
    with new, Worker(new, poll_interval=0.05):
        assert new.definition("order").version == "2"  # the last listed is current
        fresh = new.start_run("order")
        wait_until(settled(new, [run, fresh]), what="both runs to finish")
        assert new.inspect_run(run.id).status == "completed"
        assert new.inspect_run(fresh.id).definition_version == "2"
    assert sorted(calls) == sorted(
        [("1", "reserve"), ("1", "ship"), ("2", "reserve"), ("2", "deliver")]
    )


def test_a_worker_without_the_version_leaves_the_run_queued_and_says_why(
    database_url: str,
) -> None:
    calls: Calls = []
    with client_for(database_url, order("1", calls)) as old:
        run = old.start_run("order")
    new = client_for(database_url, order("2", calls, second="deliver"))
    with new, Worker(new, poll_interval=0.05):
        # Not claimed at all: no delivery, no error, no backoff.
        assert stays(lambda: [(j.status, j.deliveries) for j in jobs(new)] == [("queued", 0)])
        explanation = new.explain_run(run.id)
        # Delivered anyway (an engine cannot route by version): refused, nothing written.
        with pytest.raises(DefinitionUnavailable, match=r"version '1' of workflow 'order'"):
            new.perform({"kind": "step", "run_id": run.id, "step": "reserve"})
        assert [j.deliveries for j in jobs(new)] == [0]
        history = new.inspect_run(run.id, include_history=True).step_runs or ()
        assert [(sr.step, sr.status, sr.attempts) for sr in history] == [("reserve", "pending", ())]
    assert calls == []
    assert explanation.reason == "definition_unavailable"
    assert explanation.step == "reserve"
    assert explanation.details["version"] == "1"
    assert explanation.details["held_versions"] == ["2"]
    assert explanation.next_actions == ("deploy_version", "cancel_run", "replay_run")
    # Once a worker holding version 1 starts, the run completes.
    both = client_for(database_url, order("1", calls), order("2", calls, second="deliver"))
    with both, Worker(both, poll_interval=0.05):
        wait_until(settled(both, [run]), what="the run to finish")
        assert both.inspect_run(run.id).status == "completed"
    assert calls == [("1", "reserve"), ("1", "ship")]


def test_a_renamed_step_without_versions_is_detected_not_stranded(database_url: str) -> None:
    calls: Calls = []
    with client_for(database_url, order(None, calls)) as old:
        run = old.start_run("order")
        pinned = run.definition_version
    assert pinned is not None
    assert pinned.startswith("fp-")
    renamed = client_for(database_url, order(None, calls, second="dispatch"))
    assert renamed.definition("order").version != pinned
    with renamed, Worker(renamed, poll_interval=0.05):
        assert stays(lambda: [j.deliveries for j in jobs(renamed)] == [0])
        explanation = renamed.explain_run(run.id)
    assert explanation.reason == "definition_unavailable"
    assert explanation.details["version"] == pinned
    assert calls == []
    # A deploy that changes only step bodies keeps the version: the run goes on.
    same = client_for(database_url, order(None, calls))
    assert same.definition("order").version == pinned
    with same, Worker(same, poll_interval=0.05):
        wait_until(settled(same, [run]), what="the run to finish")
    assert calls == [("unversioned", "reserve"), ("unversioned", "ship")]


def test_workers_with_disjoint_workflows_share_a_database_without_backoff(
    database_url: str,
) -> None:
    calls: Calls = []
    orders = client_for(database_url, order("1", calls))
    invoices = client_for(database_url, invoice(calls))
    with orders, invoices:
        runs = [orders.start_run("order") for _ in range(3)]
        runs += [invoices.start_run("invoice") for _ in range(3)]
        with Worker(orders, poll_interval=0.05), Worker(invoices, poll_interval=0.05):
            wait_until(settled(orders, runs), what="every run to finish")
        for run in runs:
            done = orders.inspect_run(run.id, include_history=True)
            assert done.status == "completed"
            # One attempt per step: no delivery failed for lack of a workflow.
            assert all(len(sr.attempts or ()) == 1 for sr in done.step_runs or ())
        assert jobs(orders) == []
    assert calls.count(("invoice", "send")) == 3
    assert calls.count(("1", "ship")) == 3


def test_two_definitions_with_one_name_and_version_are_refused(database_url: str) -> None:
    calls: Calls = []
    with pytest.raises(ValueError, match=r"'order' at version '1'"):
        client_for(database_url, order("1", calls), order("1", calls, second="deliver"))


def test_a_malformed_version_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError) as raised:
        Client("sqlite://", [order("version one!", [])])
    assert "invalid_version" in raised.value.codes


def test_a_step_removed_under_a_kept_version_is_explained_not_stranded(
    database_url: str,
) -> None:
    calls: Calls = []
    with client_for(database_url, order("1", calls)) as old:
        run = old.start_run("order")
    # The author kept version "1" but renamed the first step: the queued job names a step the
    # deployed version lacks.
    kept = Workflow("order", triggers=[manual("start")], version="1")

    @kept.step(name="reserve_stock")
    def reserve() -> dict[str, str]:
        return {}

    @kept.step(name="ship", after=[reserve])
    def ship() -> dict[str, str]:
        return {}

    with client_for(database_url, kept) as new:
        explanation = new.explain_run(run.id)
        # Delivered to a process holding the kept version: refused, never silently dropped.
        with pytest.raises(DefinitionUnavailable, match="needs step 'reserve'"):
            new.perform({"kind": "step", "run_id": run.id, "step": "reserve"})
        with Worker(new, poll_interval=0.05):
            wait_until(lambda: jobs(new)[0].deliveries >= 1, what="a delivery of the job")
        (job,) = jobs(new)
        assert job.status == "queued"  # released for a retry, kept until someone acts
        assert "needs step 'reserve'" in str((job.last_error or {}).get("message"))
        assert new.inspect_run(run.id).status == "pending"
    assert explanation.reason == "definition_unavailable"
    assert explanation.details["steps"] == ["reserve"]
    assert explanation.next_actions == ("deploy_version", "cancel_run", "replay_run")
    # Deploying the version the run started on lets it finish.
    with client_for(database_url, order("1", calls)) as fixed:
        with fixed.database.transaction(fixed.clock.now()) as tx:  # due now, not after backoff
            tx.connection.execute(schema.jobs.update().values(run_at=fixed.clock.now()))
        with Worker(fixed, poll_interval=0.05):
            wait_until(settled(fixed, [run]), what="the run to finish")
        assert fixed.inspect_run(run.id).status == "completed"


def test_a_run_whose_version_is_gone_can_be_cancelled_or_replayed(database_url: str) -> None:
    calls: Calls = []
    with client_for(database_url, order("1", calls)) as old:
        run = old.start_run("order")
    with client_for(database_url, order("2", calls, second="deliver")) as new:
        cancelled = new.cancel_run(run.id)
        assert cancelled.status == "cancelled"
        assert jobs(new) == []  # its queued job went with it: nothing left for anyone
        replay = new.replay_run(run.id)
        assert replay.definition_version == "2"
        with Worker(new, poll_interval=0.05):
            wait_until(settled(new, [replay]), what="the replay to finish")
        assert new.inspect_run(replay.id).status == "completed"
    assert calls == [("2", "reserve"), ("2", "deliver")]
