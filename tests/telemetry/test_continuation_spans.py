"""A step claimed ahead is traced like any other delivery.

A database-queue worker claims a step in the transaction that leases its job, and a linear
run's next step in the transaction that finished the step before (a continuation), so the
step's ``process`` span starts already knowing the workflow and the attempt. Deliveries of
other executors claim inside the span and add them then (``test_span_tree``). The spans an
operator sees must not tell the two paths apart.
"""

from __future__ import annotations

from typing import Any

import pytest

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, Worker, Workflow, manual
from squidmesh_sdk.runtime import execution
from tests.telemetry.conftest import Telemetry
from tests.telemetry.support import check_links, run_trace

STEPS = ("reserve", "charge", "ship")


def chain() -> Workflow:
    wf = Workflow("chain", triggers=[manual("go")])

    @wf.step
    def reserve() -> dict[str, Any]:
        return {"reserved": True}

    @wf.step
    def charge() -> dict[str, Any]:
        return {"charged": True}

    @wf.step
    def ship() -> dict[str, Any]:
        return {"shipped": True}

    wf.chain(reserve, charge, ship, COMPLETE)
    return wf


@pytest.fixture
def claimed_ahead(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Each delivery's step, and whether its claim was made ahead (a continuation)."""
    seen: list[tuple[str, bool]] = []
    execute = execution._execute

    def recording(runtime: Any, run_id: str, step: str, delivery: Any, ahead: Any) -> Any:
        seen.append((step, ahead is not None))
        return execute(runtime, run_id, step, delivery, ahead)

    monkeypatch.setattr(execution, "_execute", recording)
    return seen


def test_continued_steps_have_the_attributes_of_claimed_ones(
    database_url: str, telemetry: Telemetry, claimed_ahead: list[tuple[str, bool]]
) -> None:
    with Client(database_url, [chain()], executor=DatabaseExecutor()) as client:
        run = client.start_run("chain")
        with Worker(client, concurrency=1, poll_interval=0.05, cron=False):
            assert client.wait_for_run(run.id, timeout=30).status == "completed"

    # The first step was claimed with its job's lease, the next two were continued.
    assert claimed_ahead == [(step, True) for step in STEPS]
    trace = run_trace(telemetry.spans(), run.id)
    check_links(trace)
    for step in STEPS:
        process = trace.one(f"process {step}")
        assert process.attributes == {
            "squidmesh.workflow": "chain",
            "squidmesh.run_id": run.id,
            "squidmesh.step": step,
            "squidmesh.attempt": 1,
            "squidmesh.outcome": "executed",
            "messaging.system": "squidmesh",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": "default",
            "messaging.message.id": trace.one(f"send {step}").attributes["messaging.message.id"],
        }, step
        assert process.status == "UNSET"
