"""squidmesh runs start / approve / reject / unblock / cancel / replay, and their refusals."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest

from squidmesh_sdk import Client
from squidmesh_sdk.cli import EXIT_FAILURE, EXIT_USAGE
from squidmesh_sdk.cli.commands import MSG_UNKNOWN_TRIGGER, MSG_UNKNOWN_WORKFLOW, MSG_UNSAFE_REPLAY
from squidmesh_sdk.runtime import claiming
from squidmesh_sdk.store import jobs as job_store
from tests.cli.support import Cli, assert_one_error_line, drain, stable_json

REGISTERED = "cancellable_wait, failing, holding, manual_approval, transfer"


def _paused(client: Client, workflow: str, payload: dict[str, str] | None = None) -> str:
    run = client.start_run(workflow, payload or {})
    drain(client)
    assert client.inspect_run(run.id).status == "paused"
    return run.id


# -- start ---------------------------------------------------------------------------------


def test_start_a_run(cli: Cli, client: Client) -> None:
    result = cli("runs", "start", "manual_approval", "--payload", '{"account_id": "a-1"}')
    assert (result.code, result.err) == (0, "")
    (run,) = client.list_runs()
    assert result.out == (
        f"started run {run.id} of manual_approval via manual_approval "
        "(status pending, current step wait_for_approval)\n"
    )
    assert run.payload == {"account_id": "a-1"}
    drain(client)
    assert client.inspect_run(run.id).status == "paused"


def test_start_json_with_a_trigger_and_no_payload(cli: Cli, client: Client) -> None:
    data = stable_json(cli("runs", "start", "transfer", "--trigger", "transfer", "--json").out)
    assert (data["workflow"], data["trigger"], data["status"]) == (
        "transfer",
        "transfer",
        "pending",
    )
    assert client.inspect_run(data["id"]).payload == {}


def test_start_with_a_payload_file_or_stdin(
    cli: Cli, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"account_id": "from-file"}')
    from_file = stable_json(
        cli("runs", "start", "manual_approval", "--payload", f"@{payload}", "--json").out
    )
    assert from_file["payload"] == {"account_id": "from-file"}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"account_id": "from-stdin"}'))
    from_stdin = stable_json(
        cli("runs", "start", "manual_approval", "--payload", "@-", "--json").out
    )
    assert from_stdin["payload"] == {"account_id": "from-stdin"}


def test_start_an_unknown_workflow_or_trigger(cli: Cli, client: Client) -> None:
    message = assert_one_error_line(cli("runs", "start", "nope"), EXIT_USAGE)
    assert message == MSG_UNKNOWN_WORKFLOW.format(workflow="nope", known=REGISTERED)
    message = assert_one_error_line(cli("runs", "start", "transfer", "--trigger", "x"), EXIT_USAGE)
    assert message == MSG_UNKNOWN_TRIGGER.format(workflow="transfer", trigger="x", known="transfer")
    assert client.list_runs() == []


def test_start_with_an_invalid_payload(cli: Cli, client: Client) -> None:
    result = cli("runs", "start", "manual_approval", "--payload", '{"acount_id": "a-1"}')
    message = assert_one_error_line(result, EXIT_FAILURE)
    assert message == (
        "invalid payload for trigger 'manual_approval': missing fields: account_id; "
        "unknown fields: acount_id"
    )
    assert client.list_runs() == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("{bad", "argument --payload: not valid JSON (Expecting property name"),
        ("[1, 2]", "argument --payload: must be a JSON object, got an array"),
        ('"text"', "argument --payload: must be a JSON object, got a string"),
        ("null", "argument --payload: must be a JSON object, got null"),
        ('{"x": NaN}', "argument --payload: JSON NaN is not allowed"),
        (
            "@/nonexistent/payload.json",
            "argument --payload: cannot read '/nonexistent/payload.json'",
        ),
    ],
)
def test_start_with_malformed_json(cli: Cli, app_db: str, payload: str, expected: str) -> None:
    message = assert_one_error_line(
        cli("runs", "start", "transfer", "--payload", payload), EXIT_USAGE
    )
    assert message.startswith(f"runs start: {expected}"), message


# -- approve / reject / unblock ------------------------------------------------------------


def test_approve(cli: Cli, client: Client) -> None:
    run_id = _paused(client, "manual_approval", {"account_id": "a-1"})
    result = cli(
        "runs", "approve", run_id, "--actor", "ops@example.com",
        "--comment", "looks fine", "--metadata", '{"ticket": "OPS-1"}',
    )  # fmt: skip
    assert (result.code, result.err) == (0, "")
    assert result.out == (f"approved run {run_id} (status running, current step record_approval)\n")
    drain(client)
    done = client.inspect_run(run_id, include_history=True)
    assert done.status == "completed"
    assert done.context["approval"]["decision"] == "approved"
    (event,) = [e for e in done.events or () if e.type == "approved"]
    assert (event.type, event.actor, event.comment, event.metadata) == (
        "approved",
        "ops@example.com",
        "looks fine",
        {"ticket": "OPS-1"},
    )


def test_reject_json(cli: Cli, client: Client) -> None:
    run_id = _paused(client, "manual_approval", {"account_id": "a-1"})
    data = stable_json(cli("runs", "reject", run_id, "--actor", "alice", "--json").out)
    assert (data["id"], data["status"], data["current_step"]) == (
        run_id,
        "running",
        "record_rejection",
    )
    drain(client)
    assert client.inspect_run(run_id).context["approval"]["status"] == "rejected"


def test_unblock(cli: Cli, client: Client) -> None:
    run_id = _paused(client, "holding")
    result = cli("runs", "unblock", run_id)
    assert result.out == f"unblocked run {run_id} (status running, current step released)\n"
    drain(client)
    assert client.inspect_run(run_id).status == "completed"


def test_unblock_with_actor_and_metadata(cli: Cli, client: Client) -> None:
    run_id = _paused(client, "holding")
    args = ["--actor", "bob", "--comment", "go", "--metadata", '{"n": 1}']
    assert cli("runs", "unblock", run_id, *args).code == 0
    event = (client.inspect_run(run_id, include_history=True).events or ())[-1]
    assert (event.type, event.actor, event.comment, event.metadata) == (
        "resumed",
        "bob",
        "go",
        {"n": 1},
    )


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_approve_and_reject_need_an_actor(cli: Cli, client: Client, action: str) -> None:
    run_id = _paused(client, "manual_approval", {"account_id": "a-1"})
    message = assert_one_error_line(cli("runs", action, run_id), EXIT_USAGE)
    assert message == (
        f"runs {action}: the following arguments are required: --actor "
        f"(see 'squidmesh runs {action} --help')"
    )
    assert client.inspect_run(run_id).status == "paused"


def test_approve_a_blank_actor(cli: Cli, client: Client) -> None:
    run_id = _paused(client, "manual_approval", {"account_id": "a-1"})
    assert_one_error_line(cli("runs", "approve", run_id, "--actor", ""), EXIT_FAILURE, "actor")


def test_the_wrong_manual_action_is_refused(cli: Cli, client: Client) -> None:
    approval = _paused(client, "manual_approval", {"account_id": "a-1"})
    pause = _paused(client, "holding")
    message = assert_one_error_line(cli("runs", "unblock", approval), EXIT_FAILURE)
    assert message.startswith(f"run {approval} at step 'wait_for_approval': ")
    message = assert_one_error_line(cli("runs", "approve", pause, "--actor", "a"), EXIT_FAILURE)
    assert message.startswith(f"run {pause} at step 'hold': ")


def test_approving_a_run_that_is_not_paused(cli: Cli, client: Client) -> None:
    run_id = _paused(client, "manual_approval", {"account_id": "a-1"})
    assert cli("runs", "approve", run_id, "--actor", "alice").code == 0
    drain(client)
    message = assert_one_error_line(cli("runs", "approve", run_id, "--actor", "bob"), EXIT_FAILURE)
    assert message == (
        f"run {run_id}: the run is completed, not paused: only a run paused at an approval "
        "or pause step can be approved, rejected or unblocked"
    )


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("{oops", "argument --metadata: not valid JSON"),
        ("[1]", "argument --metadata: must be a JSON object, got an array"),
        ("3", "argument --metadata: must be a JSON object, got a number"),
    ],
)
def test_malformed_metadata(cli: Cli, client: Client, metadata: str, expected: str) -> None:
    run_id = _paused(client, "manual_approval", {"account_id": "a-1"})
    result = cli("runs", "approve", run_id, "--actor", "a", "--metadata", metadata)
    assert assert_one_error_line(result, EXIT_USAGE).startswith(f"runs approve: {expected}")
    assert client.inspect_run(run_id).status == "paused"


@pytest.mark.parametrize(
    "argv",
    [
        ["approve", "{id}", "--actor", "a"],
        ["reject", "{id}", "--actor", "a"],
        ["unblock", "{id}"],
        ["cancel", "{id}"],
        ["replay", "{id}"],
    ],
)
def test_unknown_and_malformed_run_ids(cli: Cli, app_db: str, argv: list[str]) -> None:
    missing = str(uuid.uuid4())
    result = cli("runs", *(arg.format(id=missing) for arg in argv))
    assert assert_one_error_line(result, EXIT_FAILURE) == f"run {missing} does not exist"
    result = cli("runs", *(arg.format(id="not-a-uuid") for arg in argv))
    assert_one_error_line(result, EXIT_USAGE, "argument RUN_ID: 'not-a-uuid' is not a run id")


# -- cancel --------------------------------------------------------------------------------


def test_cancel_a_pending_run_then_again(cli: Cli, client: Client) -> None:
    run = client.start_run("cancellable_wait")
    result = cli("runs", "cancel", run.id)
    assert result.out == f"cancelled run {run.id} (status cancelled)\n"
    assert client.inspect_run(run.id).status == "cancelled"
    message = assert_one_error_line(cli("runs", "cancel", run.id), EXIT_FAILURE)
    assert message == (
        f"run {run.id}: the run is already cancelled; only an unfinished run can be cancelled"
    )


def test_cancel_with_an_actor_and_a_reason_is_in_the_audit_trail(cli: Cli, client: Client) -> None:
    run_id = _paused(client, "manual_approval", {"account_id": "a-1"})
    result = cli("runs", "cancel", run_id, "--actor", "ops", "--reason", "duplicate order")
    assert result.out == f"cancelled run {run_id} (status cancelled)\n"
    shown = cli("runs", "show", run_id).out
    events = [line.split(maxsplit=4) for line in shown.split("\n\n")[-1].splitlines()]
    assert events[0] == ["AT", "EVENT", "STEP", "ACTOR", "COMMENT"]
    assert [event[1:] for event in events[1:]] == [
        ["paused", "wait_for_approval", "-", "-"],
        ["cancelled", "wait_for_approval", "ops", "duplicate order"],
    ]
    data = stable_json(cli("runs", "show", run_id, "--json").out)
    assert [(e["type"], e["actor"], e["comment"], e["metadata"]) for e in data["events"]] == [
        ("paused", None, None, None),
        ("cancelled", "ops", "duplicate order", {"status": "cancelled"}),
    ]
    explained = stable_json(cli("runs", "explain", run_id, "--json").out)
    assert explained["evidence"]["cancellation"]["actor"] == "ops"
    assert explained["evidence"]["cancellation"]["reason"] == "duplicate order"


def test_cancel_with_a_blank_actor_is_refused(cli: Cli, client: Client) -> None:
    run = client.start_run("cancellable_wait")
    message = assert_one_error_line(cli("runs", "cancel", run.id, "--actor", " "), EXIT_FAILURE)
    assert "actor: must be a non-empty string" in message
    assert client.inspect_run(run.id).status == "pending"


def test_cancel_a_run_in_a_durable_wait_stops_it_at_once(cli: Cli, client: Client) -> None:
    run = client.start_run("cancellable_wait")
    drain(client)  # the wait step ran; the next step's job is due in 10 s
    assert client.inspect_run(run.id).status == "running"
    result = cli("runs", "cancel", run.id)
    assert result.out == f"cancelled run {run.id} (status cancelled)\n"
    assert client.inspect_run(run.id).status == "cancelled"
    with client.database.read() as connection:
        assert job_store.list_jobs(connection, run_id=run.id) == []  # the delayed job is gone


def test_cancel_a_run_with_a_step_running_stops_it_when_the_step_ends(
    cli: Cli, client: Client
) -> None:
    run = client.start_run("transfer")
    with client.runtime.transaction() as tx:  # a worker claimed the step; its body runs
        assert claiming.claim_step(client.runtime, tx, run.id, "send_money") is not None
    result = cli("runs", "cancel", run.id)
    assert result.out == (
        f"cancelling run {run.id}; it stops when its running step ends (status cancelling)\n"
    )
    assert client.inspect_run(run.id).status == "cancelling"
    again = cli("runs", "cancel", run.id, "--json")
    assert_one_error_line(again, EXIT_FAILURE, "the run is already being cancelled")


# -- replay --------------------------------------------------------------------------------


def test_replay_a_failed_run(cli: Cli, client: Client) -> None:
    run = client.start_run("failing")
    drain(client)
    result = cli("runs", "replay", run.id)
    (replay,) = [r for r in client.list_runs() if r.id != run.id]
    assert result.out == (
        f"replayed run {run.id} as run {replay.id} (status pending, current step explode)\n"
    )
    assert replay.replayed_from_run_id == run.id


def test_replay_after_an_irreversible_step(cli: Cli, client: Client) -> None:
    run = client.start_run("transfer")
    drain(client)
    message = assert_one_error_line(cli("runs", "replay", run.id), EXIT_FAILURE)
    assert message == MSG_UNSAFE_REPLAY.format(run_id=run.id, steps="send_money")
    assert len(client.list_runs()) == 1

    data = stable_json(cli("runs", "replay", run.id, "--allow-irreversible", "--json").out)
    assert data["replayed_from_run_id"] == run.id
    assert data["status"] == "pending"
    assert len(client.list_runs()) == 2


def test_replay_records_who_and_why(cli: Cli, client: Client) -> None:
    run = client.start_run("failing")
    drain(client)
    result = cli("runs", "replay", run.id, "--actor", "ops@example.com", "--reason", "fixed")
    assert result.code == 0
    (replay,) = [r for r in client.list_runs() if r.id != run.id]
    (event,) = client.inspect_run(run.id, include_history=True).events or ()
    assert (event.type, event.actor, event.comment) == ("replayed", "ops@example.com", "fixed")
    assert event.metadata == {"replay_run_id": replay.id, "allow_irreversible": False}
