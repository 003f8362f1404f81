"""squidmesh queues list / show / limit / clear, and runs start --priority."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from squidmesh_sdk import Client
from squidmesh_sdk.cli import EXIT_USAGE
from squidmesh_sdk.store import jobs as job_store
from tests.cli.conftest import use_app
from tests.cli.ops_app import INLINE_APP, OPS_APP, make_client
from tests.cli.support import Cli, assert_one_error_line, stable_json


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    use_app(monkeypatch, database_url, OPS_APP)
    with make_client() as ops_client:
        yield ops_client


def test_limits_are_set_listed_and_cleared(cli: Cli, client: Client) -> None:
    assert cli("queues", "list").out == "no queue has limits\n"
    done = cli("queues", "limit", "default", "--concurrency", "3", "--rate", "100/1m")
    assert done.code == 0
    assert done.out == "queue default: at most 3 running, at most 100 started per 60s\n"
    (limits,) = client.queue_limits()
    assert (limits.concurrency, limits.rate.count if limits.rate else None) == (3, 100)
    rows = cli("queues", "show").out.splitlines()
    assert rows[0].split() == ["QUEUE", "CONCURRENCY", "RUNNING", "RATE", "TOKENS", "NEXT_SLOT_IN"]
    assert rows[1].split()[:5] == ["default", "3", "0", "100/60s", "100.0"]
    data = stable_json(cli("queues", "list", "--json").out)
    (queue,) = data["queues"]
    assert queue["queue"] == "default"
    assert queue["concurrency"] == 3
    assert queue["running"] == 0
    assert (queue["rate"]["count"], queue["rate"]["per_seconds"]) == (100, 60.0)
    stats = cli("jobs", "stats").out.splitlines()
    assert stats[1].endswith("concurrency 3, rate 100/60s")
    assert cli("queues", "clear", "default").out == "queue default: limits removed\n"
    assert cli("queues", "clear", "default").out == "queue default had no limits\n"
    assert client.queue_limits() == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (("--rate", "100"), "is not a rate"),
        (("--rate", "0/1m"), "is not a rate"),
        (("--rate", "5/d"), "is not a rate"),
        (("--rate", "1/99999999999h"), "is not a rate"),  # longer than a timedelta
        (("--concurrency", "0"), "is not a positive integer"),
        ((), "give --concurrency and/or --rate"),
    ],
)
def test_malformed_limits_are_usage_errors(
    cli: Cli, client: Client, argv: tuple[str, ...], problem: str
) -> None:
    result = cli("queues", "limit", "default", *argv)
    assert result.code == EXIT_USAGE
    assert problem in result.err
    assert client.queue_limits() == []


def test_an_app_without_the_database_queue_is_told_why(
    cli: Cli, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_app(monkeypatch, database_url, INLINE_APP)
    result = cli("queues", "limit", "default", "--concurrency", "1")
    assert_one_error_line(result, EXIT_USAGE, "queue limits apply to the database queue")


def test_runs_start_takes_a_priority(cli: Cli, client: Client) -> None:
    started = stable_json(cli("runs", "start", "one_step", "--priority", "50", "--json").out)
    assert started["priority"] == 50
    with client.database.read() as connection:
        (job,) = job_store.list_jobs(connection, run_id=started["id"])
    assert job.priority == 50
    refused = cli("runs", "start", "one_step", "--priority", "1001")
    assert refused.code == EXIT_USAGE
    assert "priority must be between -1000 and 1000" in refused.err
