"""runs show with saga compensations; runs actions with the in-process executor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from squidmesh_sdk import Client
from tests.cli.conftest import use_app
from tests.cli.ops_app import INLINE_APP, OPS_APP, make_client
from tests.cli.support import Cli, drain, stable_json


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    use_app(monkeypatch, database_url, OPS_APP)
    with make_client() as ops_client:
        yield ops_client


def _sections(out: str) -> dict[str, list[list[str]]]:
    """Tables of 'runs show' by their first header, each row split on runs of spaces."""
    tables = {}
    for block in out.split("\n\n")[1:]:
        lines = block.splitlines()
        tables[lines[0].split()[0]] = [line.split(maxsplit=5) for line in lines]
    return tables


def test_show_lists_the_compensations_a_failed_saga_ran(cli: Cli, client: Client) -> None:
    run = client.start_run("saga_checkout", {"order_id": "o-1", "amount_cents": 500})
    drain(client)
    assert client.inspect_run(run.id).status == "failed"
    result = cli("runs", "show", run.id)
    assert (result.code, result.err) == (0, "")
    table = _sections(result.out)["COMPENSATION"]
    assert table[0] == ["COMPENSATION", "OF_STEP", "STATUS", "ATTEMPT", "FINISHED_AT", "RESULT"]
    # Newest completion first: the authorization is voided, then the stock released.
    assert [row[:4] for row in table[1:]] == [
        ["void_payment_authorization", "authorize_payment", "completed", "1"],
        ["release_inventory", "reserve_inventory", "completed", "1"],
    ]
    assert table[1][5] == '{"voided": "auth_o-1"}'
    assert table[2][5] == ('{"after": "capture declined for auth_o-1", "released": "res_o-1"}')


def test_show_a_compensation_that_failed(cli: Cli, client: Client) -> None:
    run = client.start_run("refund_saga")
    drain(client)
    table = _sections(cli("runs", "show", run.id).out)["COMPENSATION"]
    assert [row[:4] for row in table[1:]] == [["refund", "charge", "failed", "1"]]
    assert table[1][5] == "refund of ch-1 failed: provider down"
    data = stable_json(cli("runs", "show", run.id, "--json").out)
    compensation = data["step_runs"][0]["recovery"]["compensation"]
    assert compensation["status"] == "failed"  # the same record, as --json always had it


def test_show_without_compensations_has_no_such_table(cli: Cli, client: Client) -> None:
    run = client.start_run("one_step")
    drain(client)
    assert "COMPENSATION" not in cli("runs", "show", run.id).out


def test_start_with_the_in_process_executor_waits_for_a_retry(
    cli: Cli, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt fails and its retry waits half a second: the command stays for it,
    says so on stderr, and prints the finished run, instead of leaving it retrying for good."""
    use_app(monkeypatch, database_url, INLINE_APP)
    result = cli("runs", "start", "flaky", "--json")
    assert result.code == 0, result
    run = stable_json(result.out)
    assert run["status"] == "completed"
    (note,) = result.err.splitlines()
    assert note.startswith("squidmesh: waiting ")
    assert note.endswith(
        "for delayed work, a retry or a wait: the app's in-process executor runs it in this "
        "process; Ctrl-C stops waiting and leaves the run unfinished"
    )
    shown = stable_json(cli("runs", "show", run["id"], "--json").out)
    (step_run,) = shown["step_runs"]
    assert [a["status"] for a in step_run["attempts"]] == ["failed", "completed"]


def test_start_with_the_in_process_executor_and_nothing_delayed(
    cli: Cli, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_app(monkeypatch, database_url, INLINE_APP)
    result = cli("runs", "start", "shipping")
    assert (result.code, result.err) == (0, "")
    assert result.out.endswith("(status completed)\n")
