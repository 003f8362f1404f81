"""squidmesh runs list / show / explain: tables, stable JSON, and their errors."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from squidmesh_sdk import Client
from squidmesh_sdk.cli import EXIT_FAILURE, EXIT_USAGE
from squidmesh_sdk.store import schema
from tests.cli.support import Cli, assert_one_error_line, drain, stable_json

RUN_KEYS = {
    "context",
    "current_step",
    "definition_fingerprint",
    "definition_version",
    "id",
    "idempotency_key",
    "inserted_at",
    "operator_retries",
    "parent_run_id",
    "parent_step",
    "priority",
    "last_error",
    "payload",
    "replayed_from_run_id",
    "status",
    "trace_context",
    "trigger",
    "updated_at",
    "workflow",
}


def _paused_approval(client: Client, account: str = "a-1") -> str:
    run = client.start_run("manual_approval", {"account_id": account})
    drain(client)
    assert client.inspect_run(run.id).status == "paused"
    return run.id


def _is_iso(value: str) -> bool:
    return datetime.fromisoformat(value).tzinfo is not None


# -- list ----------------------------------------------------------------------------------


def test_list_with_no_runs(cli: Cli, client: Client) -> None:
    assert cli("runs", "list").out == "no runs\n"
    result = cli("runs", "list", "--json")
    assert stable_json(result.out) == {"next_after": None, "runs": []}


def test_list_prints_a_table_newest_first(cli: Cli, client: Client) -> None:
    first = client.start_run("transfer")
    second = client.start_run("manual_approval", {"account_id": "a-1"})
    result = cli("runs", "list")
    assert (result.code, result.err) == (0, "")
    header, *rows = result.out.splitlines()
    assert header.split() == [
        "ID",
        "WORKFLOW",
        "TRIGGER",
        "STATUS",
        "CURRENT_STEP",
        "INSERTED_AT",
        "DURATION",
    ]
    assert [row.split()[:5] for row in rows] == [
        [second.id, "manual_approval", "manual_approval", "pending", "wait_for_approval"],
        [first.id, "transfer", "transfer", "pending", "send_money"],
    ]
    assert all(_is_iso(row.split()[5]) for row in rows)


def test_list_shows_how_long_a_run_took(cli: Cli, client: Client) -> None:
    """A finished run's duration is from start to finish; it does not grow afterwards."""
    run = client.start_run("transfer")
    drain(client)
    done = client.inspect_run(run.id)
    took = (done.updated_at - done.inserted_at).total_seconds()
    (row,) = cli("runs", "list").out.splitlines()[1:]
    assert row.split()[3] == "completed"
    assert row.split()[6] == (f"{took * 1000:.0f}ms" if took < 1 else f"{took:.1f}s")


def test_list_an_unknown_workflow_names_the_registered_ones(cli: Cli, client: Client) -> None:
    message = assert_one_error_line(cli("runs", "list", "--workflow", "nope"), EXIT_USAGE)
    assert message == (
        "unknown workflow 'nope'; the app registers: cancellable_wait, failing, holding, "
        "manual_approval, transfer"
    )
    assert_one_error_line(cli("runs", "list", "--workflow", "nope", "--json"), EXIT_USAGE)
    # A registered workflow without runs is no error.
    assert cli("runs", "list", "--workflow", "holding").out == "no runs\n"


def test_list_runs_of_a_workflow_the_app_no_longer_registers(cli: Cli, client: Client) -> None:
    """An old deploy's runs stay listable by name, though the app dropped their workflow."""
    run = client.start_run("transfer")
    app = ["--app", "tests.cli.app:approvals_only"]
    result = cli("runs", "list", "--workflow", "transfer", *app)
    assert (result.code, result.err) == (0, "")
    assert [row.split()[0] for row in result.out.splitlines()[1:]] == [run.id]


def test_list_filters_and_pages(cli: Cli, client: Client) -> None:
    ids = [client.start_run("transfer").id for _ in range(3)]
    client.start_run("failing")
    drain(client)
    newest_first = list(reversed(ids))

    only = stable_json(cli("runs", "list", "--workflow", "transfer", "--json").out)
    assert [run["id"] for run in only["runs"]] == newest_first
    assert {run["status"] for run in only["runs"]} == {"completed"}

    failed = stable_json(cli("runs", "list", "--status", "failed", "--json").out)
    assert [run["workflow"] for run in failed["runs"]] == ["failing"]

    page = stable_json(cli("runs", "list", "--workflow", "transfer", "--limit", "2", "--json").out)
    assert [run["id"] for run in page["runs"]] == newest_first[:2]
    assert page["next_after"] == newest_first[1]
    rest = stable_json(
        cli(
            "runs",
            "list",
            "--workflow",
            "transfer",
            "--limit",
            "2",
            "--after",
            page["next_after"],
            "--json",
        ).out
    )
    assert [run["id"] for run in rest["runs"]] == newest_first[2:]
    assert rest["next_after"] is None


def test_list_json_shape(cli: Cli, client: Client) -> None:
    run = client.start_run("manual_approval", {"account_id": "a-1"})
    data = stable_json(cli("runs", "list", "--json").out)
    assert set(data) == {"runs", "next_after"}
    (listed,) = data["runs"]
    assert set(listed) == RUN_KEYS
    assert listed["id"] == run.id
    assert listed["payload"] == {"account_id": "a-1"}
    assert _is_iso(listed["inserted_at"])
    assert _is_iso(listed["updated_at"])


def test_list_after_an_unknown_run(cli: Cli, client: Client) -> None:
    missing = str(uuid.uuid4())
    message = assert_one_error_line(cli("runs", "list", "--after", missing), EXIT_FAILURE)
    assert message == f"run {missing} does not exist"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--after", "nope"], "argument --after: 'nope' is not a run id (a UUID)"),
        (["--status", "sleeping"], "argument --status: invalid choice: 'sleeping'"),
        (["--limit", "0"], "argument --limit: '0' is not a positive integer"),
        (["--limit", "ten"], "argument --limit: 'ten' is not a positive integer"),
    ],
)
def test_list_usage_errors(cli: Cli, app_db: str, argv: list[str], expected: str) -> None:
    message = assert_one_error_line(cli("runs", "list", *argv), EXIT_USAGE)
    assert message.startswith(f"runs list: {expected}")
    assert message.endswith("(see 'squidmesh runs list --help')")


# -- show ----------------------------------------------------------------------------------


def test_show_a_paused_run(cli: Cli, client: Client) -> None:
    run_id = _paused_approval(client)
    result = cli("runs", "show", run_id)
    assert (result.code, result.err) == (0, "")
    out = result.out
    assert f"run           {run_id}\n" in out
    assert "status        paused\n" in out
    assert "current step  wait_for_approval\n" in out
    assert "\nversion       fp-" in out
    assert 'payload       {"account_id": "a-1"}\n' in out
    steps = [line.split()[:3] for line in out.split("\n\n")[1].splitlines()]
    assert steps == [
        ["STEP", "STATUS", "ATTEMPTS"],
        ["wait_for_approval", "running", "1"],
        ["record_approval", "waiting", "0"],
        ["record_rejection", "waiting", "0"],
    ]
    events = [line.split() for line in out.split("\n\n")[3].splitlines()]
    assert events[0] == ["AT", "EVENT", "STEP", "ACTOR", "COMMENT"]
    assert events[1][1:] == ["paused", "wait_for_approval", "-", "-"]


def test_show_json_has_the_whole_history(cli: Cli, client: Client) -> None:
    run_id = _paused_approval(client)
    assert cli("runs", "approve", run_id, "--actor", "alice", "--comment", "ok").code == 0
    drain(client)
    data = stable_json(cli("runs", "show", run_id, "--json").out)
    assert set(data) == RUN_KEYS | {"step_runs", "events", "steps", "signals", "children"}
    assert data["status"] == "completed"
    assert [(s["step"], s["status"]) for s in data["steps"]] == [
        ("wait_for_approval", "completed"),
        ("record_approval", "completed"),
        ("record_rejection", "skipped"),
    ]
    step_run = data["step_runs"][0]
    assert set(step_run) == {
        "attempts",
        "id",
        "input",
        "inserted_at",
        "last_error",
        "manual",
        "output",
        "recovery",
        "resume",
        "run_id",
        "status",
        "step",
        "updated_at",
    }
    (attempt,) = step_run["attempts"]
    assert set(attempt) == {
        "error",
        "id",
        "inserted_at",
        "number",
        "status",
        "step_run_id",
        "updated_at",
    }
    assert _is_iso(attempt["inserted_at"])
    assert [(e["type"], e["actor"], e["comment"]) for e in data["events"]] == [
        ("paused", None, None),
        ("approved", "alice", "ok"),
        ("skipped", None, None),
    ]
    assert set(data["events"][0]) == {"actor", "at", "comment", "metadata", "step", "type"}
    assert set(data["steps"][2]) == {
        "attempts",
        "depends_on",
        "input",
        "inserted_at",
        "last_error",
        "output",
        "recovery",
        "status",
        "step",
        "updated_at",
    }
    # The branch not taken has a row of its own: skipped when the run completed.
    assert (data["steps"][2]["status"], _is_iso(data["steps"][2]["inserted_at"])) == (
        "skipped",
        True,
    )


def test_show_a_failed_run_lists_the_attempt_error(cli: Cli, client: Client) -> None:
    run = client.start_run("failing")
    drain(client)
    out = cli("runs", "show", run.id).out
    assert "last error    boom\n" in out
    attempts = out.split("\n\n")[2].splitlines()
    assert attempts[0].split() == ["STEP", "ATTEMPT", "STATUS", "STARTED_AT", "ERROR"]
    assert attempts[1].split()[:3] == ["explode", "1", "failed"]
    assert attempts[1].endswith("boom")


def test_show_a_run_whose_workflow_the_app_no_longer_has(cli: Cli, client: Client) -> None:
    run = client.start_run("transfer")
    drain(client)
    app = ["--app", "tests.cli.app:approvals_only"]
    data = stable_json(cli("runs", "show", run.id, "--json", *app).out)
    assert data["steps"] is None
    assert [step_run["step"] for step_run in data["step_runs"]] == ["send_money"]
    steps = cli("runs", "show", run.id, *app).out.split("\n\n")[1].splitlines()
    assert steps[1].split()[:3] == ["send_money", "completed", "1"]
    explained = stable_json(cli("runs", "explain", run.id, "--json", *app).out)
    assert explained["details"] == {"workflow_definition": "unavailable"}


def test_show_while_a_worker_starts_a_step(cli: Cli, client: Client) -> None:
    """A step run committed between the reads of step runs and of attempts is left out.

    On PostgreSQL each statement of a READ COMMITTED transaction sees the latest commits, so
    the attempts query can return an attempt of a step run the first query did not see.
    """
    run = client.start_run("manual_approval", {"account_id": "a-1"})
    fired: list[str] = []

    def worker_commits_meanwhile(
        _conn: object, _cursor: object, statement: str, *_args: object
    ) -> None:
        if not fired and "FROM squidmesh_step_attempts JOIN squidmesh_step_runs" in statement:
            fired.append(statement)
            drain(client)  # another connection starts the approval step and commits

    event.listen(Engine, "before_cursor_execute", worker_commits_meanwhile)
    try:
        result = cli("runs", "show", run.id, "--json")
    finally:
        event.remove(Engine, "before_cursor_execute", worker_commits_meanwhile)
    assert fired
    assert (result.code, result.err) == (0, "")
    data = stable_json(result.out)
    assert all(
        attempt["step_run_id"] == step_run["id"]
        for step_run in data["step_runs"]
        for attempt in step_run["attempts"]
    )
    assert client.inspect_run(run.id).status == "paused"


def test_show_an_unknown_run(cli: Cli, client: Client) -> None:
    missing = str(uuid.uuid4())
    message = assert_one_error_line(cli("runs", "show", missing), EXIT_FAILURE)
    assert message == f"run {missing} does not exist"


def test_show_a_malformed_run_id(cli: Cli, app_db: str) -> None:
    message = assert_one_error_line(cli("runs", "show", "12345"), EXIT_USAGE)
    assert message.startswith("runs show: argument RUN_ID: '12345' is not a run id (a UUID)")


def test_show_accepts_any_spelling_of_a_uuid(cli: Cli, client: Client) -> None:
    run = client.start_run("transfer")
    assert stable_json(cli("runs", "show", run.id.upper(), "--json").out)["id"] == run.id


# -- explain -------------------------------------------------------------------------------


def test_explain_a_paused_approval(cli: Cli, client: Client) -> None:
    run_id = _paused_approval(client)
    result = cli("runs", "explain", run_id)
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        f"run      {run_id}",
        "status   paused",
        "reason   paused_for_approval",
        "step     wait_for_approval",
        'details  {"approval_targets": {"error": "record_rejection", "ok": "record_approval"}}',
        f"next     squidmesh runs approve {run_id} --actor NAME",
        f"         squidmesh runs reject {run_id} --actor NAME",
        f"         squidmesh runs cancel {run_id}",
    ]


def test_explain_json(cli: Cli, client: Client) -> None:
    run_id = _paused_approval(client)
    data = stable_json(cli("runs", "explain", run_id, "--json").out)
    assert set(data) == {
        "details",
        "evidence",
        "next_actions",
        "reason",
        "run_id",
        "status",
        "step",
    }
    assert data["run_id"] == run_id
    assert data["reason"] == "paused_for_approval"
    assert data["next_actions"] == ["approve_run", "reject_run", "cancel_run"]
    assert data["evidence"]["run"]["id"] == run_id
    assert _is_iso(data["evidence"]["run"]["inserted_at"])


def test_explain_a_failed_run(cli: Cli, client: Client) -> None:
    run = client.start_run("failing")
    drain(client)
    data = stable_json(cli("runs", "explain", run.id, "--json").out)
    assert (data["reason"], data["step"]) == ("step_failed", "explode")
    assert data["details"]["last_error"]["message"] == "boom"
    assert data["next_actions"] == ["retry_run", "replay_run"]
    lines = cli("runs", "explain", run.id).out.splitlines()
    assert lines[-2:] == [
        f"next     squidmesh runs retry {run.id}",
        f"         squidmesh runs replay {run.id}",
    ]


def test_explain_errors(cli: Cli, client: Client) -> None:
    missing = str(uuid.uuid4())
    assert_one_error_line(cli("runs", "explain", missing), EXIT_FAILURE, "does not exist")
    assert_one_error_line(cli("runs", "explain", "x"), EXIT_USAGE, "is not a run id")


def test_show_renders_errors_stored_by_older_releases(
    cli: Cli, client: Client, app_db: str
) -> None:
    run = client.start_run("failing")
    drain(client)
    old = {"message": "failed to dispatch workflow step", "next_step": "b", "cause": "refused"}
    engine = sa.create_engine(app_db)
    with engine.begin() as connection:
        connection.execute(
            schema.runs.update().where(schema.runs.c.id == uuid.UUID(run.id)).values(last_error=old)
        )
        connection.execute(  # the step run's latest attempt, held in its own row
            schema.step_runs.update()
            .where(schema.step_runs.c.attempt_id.is_not(None))
            .values(attempt_error={"message": "gone", "reason": "worker_lost"})
        )
    engine.dispose()
    out = cli("runs", "show", run.id).out
    assert "last error    failed to dispatch workflow step\n" in out
    assert out.split("\n\n")[2].splitlines()[1].endswith("gone")
    data = stable_json(cli("runs", "show", run.id, "--json").out)
    assert (data["last_error"]["kind"], data["last_error"]["details"]) == (
        "dispatch_failed",
        {"next_step": "b", "reason": "refused"},
    )
    (attempt,) = data["step_runs"][0]["attempts"]
    assert (attempt["error"]["kind"], attempt["error"]["code"]) == ("abandoned", "worker_lost")


def test_show_json_of_a_failed_run_has_the_error_shape(cli: Cli, client: Client) -> None:
    run = client.start_run("failing")
    drain(client)
    data = stable_json(cli("runs", "show", run.id, "--json").out)
    assert data["last_error"] == {
        "kind": "step_error",
        "message": "boom",
        "code": "non_retryable",
        "type": "squidmesh_sdk.errors.NonRetryableError",
        "retryable": False,
        "step": "explode",
        "details": {},
        "cause": None,
    }
