"""squidmesh runs signal (and runs retry): what an operator types and reads back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from squidmesh_sdk import Client
from squidmesh_sdk.cli import EXIT_FAILURE
from tests.cli.app import OUTAGE, events_client
from tests.cli.conftest import use_app
from tests.cli.support import Cli, assert_one_error_line, drain, stable_json

APP = "tests.cli.app:events_client"


@pytest.fixture
def events(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    use_app(monkeypatch, database_url, APP)
    with events_client() as client:
        yield client


def _waiting(client: Client) -> str:
    run = client.start_run("awaiting", {})
    drain(client)
    assert client.explain_run(run.id).reason == "waiting_for_signal"
    return run.id


def test_signal_a_waiting_run(cli: Cli, events: Client) -> None:
    run_id = _waiting(events)
    result = cli(
        "runs", "signal", run_id, "paid", "--json-payload", '{"amount": 12}',
        "--idempotency-key", "hook-1",
    )  # fmt: skip
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(f"signal 'paid' delivered to run {run_id}, step paid (status ")
    drain(events)
    done = events.inspect_run(run_id, include_history=True)
    assert done.status == "completed"
    assert done.context["payment"] == {"amount": 12}
    again = cli(
        "runs", "signal", run_id, "paid", "--json-payload", '{"amount": 12}',
        "--idempotency-key", "hook-1", "--json",
    )  # fmt: skip
    data = stable_json(again.out)
    assert (data["signal"]["duplicate"], data["signal"]["status"]) == (True, "consumed")
    shown = cli("runs", "show", run_id)
    assert "SIGNAL" in shown.out
    assert "hook-1" in shown.out


def test_signal_explain_names_the_command(cli: Cli, events: Client) -> None:
    run_id = _waiting(events)
    out = cli("runs", "explain", run_id).out
    assert "waiting_for_signal" in out
    assert f"squidmesh runs signal {run_id} SIGNAL --json-payload JSON" in out


def test_signal_refusals_are_one_error_line(cli: Cli, events: Client) -> None:
    run_id = _waiting(events)
    bad = cli("runs", "signal", run_id, "paid", "--json-payload", '{"amount": "x"}')
    assert_one_error_line(bad, EXIT_FAILURE, "invalid payload for signal 'paid'")
    unknown = cli("runs", "signal", run_id, "shipped")
    assert_one_error_line(unknown, EXIT_FAILURE, "cannot take signal 'shipped'")
    assert events.inspect_run(run_id, include_history=True).signals == ()


# -- retry ---------------------------------------------------------------------------------


def test_retry_a_failed_run(cli: Cli, events: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(OUTAGE, "on", True)
    run = events.start_run("flaky", {})
    drain(events)
    assert events.inspect_run(run.id).status == "failed"
    assert f"squidmesh runs retry {run.id}" in cli("runs", "explain", run.id).out
    monkeypatch.setitem(OUTAGE, "on", False)
    result = cli("runs", "retry", run.id, "--actor", "ops", "--reason", "partner back")
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(f"retrying run {run.id} from step call_partner@2 (status ")
    drain(events)
    done = events.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert [(e.type, e.actor, e.comment) for e in done.events or () if e.type == "retried"] == [
        ("retried", "ops", "partner back")
    ]
    again = cli("runs", "retry", run.id)
    assert_one_error_line(again, EXIT_FAILURE, "the run is completed")


def test_show_and_explain_say_which_steps_a_cancel_closed(cli: Cli, events: Client) -> None:
    run = events.start_run("fanned", {})  # left and right scheduled; no worker ran them
    cancelled = cli("runs", "cancel", run.id)
    assert cancelled.out == f"cancelled run {run.id} (status cancelled)\n"
    shown = cli("runs", "show", run.id)
    assert shown.code == 0
    assert "left   cancelled" in shown.out
    assert "right  cancelled" in shown.out
    assert "steps_closed" in shown.out
    assert "cancelled, not run: left, right" in shown.out
    explained = cli("runs", "explain", run.id, "--json")
    details = json.loads(explained.out)["details"]
    assert details["closed_steps"] == ["left", "right"]
    drain(events)  # their jobs were discarded with the cancel: nothing runs
    assert {
        sr.step: sr.status
        for sr in events.inspect_run(run.id, include_history=True).step_runs or ()
    } == {
        "left": "cancelled",
        "right": "cancelled",
    }
