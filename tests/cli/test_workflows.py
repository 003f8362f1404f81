"""squidmesh workflows list / show: versions, triggers and cron schedules the app holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from squidmesh_sdk import Client
from squidmesh_sdk.cli import EXIT_USAGE
from squidmesh_sdk.executors.scheduler import CronScheduler
from tests.cli.conftest import use_app
from tests.cli.ops_app import OPS_APP, make_client
from tests.cli.support import Cli, assert_one_error_line, stable_json


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    use_app(monkeypatch, database_url, OPS_APP)
    with make_client() as ops_client:
        yield ops_client


def _next_eight_utc(at: datetime) -> datetime:
    eight = at.replace(hour=8, minute=0, second=0, microsecond=0)
    return eight if eight > at else eight + timedelta(days=1)


def test_list_versions_triggers_and_schedules(cli: Cli, client: Client) -> None:
    result = cli("workflows", "list")
    assert (result.code, result.err) == (0, "")
    workflows, schedules = result.out.split("\n\n")
    rows = [line.split(maxsplit=4) for line in workflows.splitlines()]
    assert rows[0] == ["WORKFLOW", "VERSION", "CURRENT", "STEPS", "TRIGGERS"]
    by_name = {(row[0], row[1]): row[2:] for row in rows[1:]}
    assert by_name[("shipping", "1")] == ["no", "1", "ship (manual)"]
    assert by_name[("shipping", "2")] == ["yes", "2", "ship (manual)"]
    digest_version = client.workflows["daily_digest"].version
    assert by_name[("daily_digest", digest_version)] == [
        "yes",
        "2",
        "manual_digest (manual), daily_digest (cron 0 8 * * *)",
    ]
    assert [row[0] for row in rows[1:]] == sorted(row[0] for row in rows[1:])

    header, row = schedules.splitlines()
    assert header.split() == ["WORKFLOW", "TRIGGER", "CRON", "TIMEZONE", "LAST_WINDOW", "NEXT_FIRE"]
    cells = row.split()
    assert cells[:2] == ["daily_digest", "daily_digest"]
    assert cells[-3:-1] == ["Etc/UTC", "-"]  # no worker has scheduled it yet
    fire = datetime.fromisoformat(cells[-1])
    assert fire.hour == 8
    assert timedelta(0) < fire - datetime.now(fire.tzinfo) <= timedelta(days=1)


def test_list_json_and_the_last_window_a_worker_handled(cli: Cli, client: Client) -> None:
    CronScheduler(client.runtime).tick()  # what every worker does: tracks the trigger
    data = stable_json(cli("workflows", "list", "--json").out)
    assert set(data) == {"at", "workflows"}
    by_name = {workflow["name"]: workflow for workflow in data["workflows"]}
    assert set(by_name) == set(client.workflows)
    shipping = by_name["shipping"]
    assert set(shipping) == {"current_version", "description", "name", "schedules", "versions"}
    assert shipping["current_version"] == "2"
    assert [(v["version"], v["current"], v["steps"]) for v in shipping["versions"]] == [
        ("1", False, ["pack"]),
        ("2", True, ["pack", "wrap"]),
    ]
    assert set(shipping["versions"][0]) == {
        "current",
        "fingerprint",
        "steps",
        "triggers",
        "version",
    }
    assert shipping["versions"][0]["triggers"][0]["name"] == "ship"
    assert shipping["schedules"] == []

    (schedule,) = by_name["daily_digest"]["schedules"]
    at = datetime.fromisoformat(data["at"])
    assert schedule["trigger"] == "daily_digest"
    assert (schedule["expression"], schedule["timezone"]) == ("0 8 * * *", "Etc/UTC")
    assert datetime.fromisoformat(schedule["next_fire_at"]) == _next_eight_utc(at)
    last = datetime.fromisoformat(schedule["last_window_start"])
    assert last == _next_eight_utc(at) - timedelta(days=1)  # tracked from its latest window


def test_show_one_workflow(cli: Cli, client: Client) -> None:
    result = cli("workflows", "show", "saga_checkout")
    assert (result.code, result.err) == (0, "")
    fields, steps, triggers = result.out.split("\n\n")
    assert fields.splitlines()[:4] == [
        "workflow         saga_checkout",
        "description      -",
        f"current version  {client.workflows['saga_checkout'].version}",
        f"versions held    {client.workflows['saga_checkout'].version}",
    ]
    assert [line.split() for line in steps.splitlines()] == [
        ["STEP", "KIND", "RETRY", "COMPENSATION"],
        ["reserve_inventory", "function", "1", "release_inventory"],
        ["authorize_payment", "function", "1", "void_payment_authorization"],
        ["capture_payment", "function", "2", "-"],
    ]
    assert [line.split() for line in triggers.splitlines()] == [
        ["TRIGGER", "KIND", "CRON", "TIMEZONE"],
        ["checkout", "manual", "-", "-"],
    ]
    shipping = stable_json(cli("workflows", "show", "shipping", "--json").out)
    assert shipping["name"] == "shipping"
    assert [v["version"] for v in shipping["versions"]] == ["1", "2"]
    digest = cli("workflows", "show", "daily_digest").out.split("\n\n")
    assert digest[-1].splitlines()[0].split() == [
        "TRIGGER",
        "CRON",
        "TIMEZONE",
        "LAST_WINDOW",
        "NEXT_FIRE",
    ]


def test_show_an_unknown_workflow(cli: Cli, client: Client) -> None:
    message = assert_one_error_line(cli("workflows", "show", "nope"), EXIT_USAGE)
    assert message == (
        "unknown workflow 'nope'; the app registers: daily_digest, flaky, one_step, "
        "refund_saga, saga_checkout, shipping, slow_retry"
    )
