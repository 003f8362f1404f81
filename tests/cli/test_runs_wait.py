"""squidmesh runs start --idempotency-key / --wait, and runs show --follow."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest

from squidmesh_sdk import Client, Worker
from squidmesh_sdk.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from squidmesh_sdk.cli.errors import EXIT_RUN_CANCELLED, EXIT_RUN_FAILED, EXIT_WAIT_TIMEOUT
from tests.cli.support import Cli, assert_one_error_line, drain, stable_json

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


@pytest.fixture
def worker(client: Client) -> Iterator[Worker]:
    """A worker thread delivering the test app's jobs while the command waits."""
    with Worker(client, concurrency=2, poll_interval=0.05) as running:
        yield running


def later(seconds: float, action: object) -> threading.Timer:
    timer = threading.Timer(seconds, action)  # type: ignore[arg-type]
    timer.start()
    return timer


def progress(out: str) -> list[str]:
    """The progress lines of ``--follow``, without their times."""
    lines = []
    for line in out.splitlines():
        match = re.fullmatch(rf"({TIME})  (\S+ \S.*)", line)  # not a table row
        if match:
            lines.append(match.group(2))
    return lines


# -- start --idempotency-key ---------------------------------------------------------------


def test_the_same_key_starts_one_run(cli: Cli, client: Client) -> None:
    first = cli("runs", "start", "transfer", "--idempotency-key", "req-1")
    again = cli("runs", "start", "transfer", "--idempotency-key", "req-1")
    as_json = stable_json(
        cli("runs", "start", "transfer", "--idempotency-key", "req-1", "--json").out
    )
    (run,) = client.list_runs()
    assert (first.code, again.code) == (0, 0)
    state = "(status pending, current step send_money)"
    assert first.out == f"started run {run.id} of transfer via transfer {state}\n"
    assert again.out == (
        f"run {run.id} of transfer was already started with this idempotency key "
        "(status pending, current step send_money)\n"
    )
    assert (as_json["id"], as_json["created"], as_json["idempotency_key"]) == (
        run.id,
        False,
        "req-1",
    )
    fresh = stable_json(
        cli("runs", "start", "transfer", "--idempotency-key", "req-2", "--json").out
    )
    assert fresh["created"] is True


def test_another_payload_under_a_used_key_fails(cli: Cli, client: Client) -> None:
    cli(
        "runs",
        "start",
        "manual_approval",
        "--payload",
        '{"account_id": "a-1"}',
        "--idempotency-key",
        "k",
    )
    result = cli(
        "runs",
        "start",
        "manual_approval",
        "--payload",
        '{"account_id": "a-2"}',
        "--idempotency-key",
        "k",
    )
    message = assert_one_error_line(result, EXIT_FAILURE, "idempotency key 'k' already started run")
    assert "use a new key for a new request" in message
    assert len(client.list_runs()) == 1


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_a_malformed_key_is_a_usage_error(cli: Cli, client: Client, key: str) -> None:
    result = cli("runs", "start", "transfer", "--idempotency-key", key)
    assert_one_error_line(result, EXIT_USAGE, "an idempotency key is non-empty text of at most 200")
    assert client.list_runs() == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("runs", "start", "transfer", "--timeout", "5"), "--timeout only goes with --wait"),
        (
            ("runs", "show", "0190e3a4-0000-7000-8000-000000000000", "--timeout", "5"),
            "--timeout only goes with --follow",
        ),
        (("runs", "start", "transfer", "--wait", "--timeout", "0"), "'0' is not a positive number"),
        (("runs", "start", "transfer", "--wait", "--timeout", "-1"), "is not a positive number"),
    ],
)
def test_timeout_misuse_is_a_usage_error(
    cli: Cli, client: Client, argv: tuple[str, ...], message: str
) -> None:
    assert_one_error_line(cli(*argv), EXIT_USAGE, message)
    assert client.list_runs() == []


# -- start --wait --------------------------------------------------------------------------


def test_wait_for_a_run_that_completes(cli: Cli, client: Client, worker: Worker) -> None:
    result = cli("runs", "start", "transfer", "--wait")
    (run,) = client.list_runs()
    assert result.code == EXIT_OK
    assert result.out == (
        f"started run {run.id} of transfer via transfer (status pending, current step send_money)\n"
        f"run {run.id} completed\n"
    )
    assert (
        result.err
        == f"squidmesh: waiting for run {run.id} to finish; Ctrl-C stops waiting, the run goes on\n"
    )


def test_wait_for_a_run_that_fails(cli: Cli, client: Client, worker: Worker) -> None:
    result = cli("runs", "start", "failing", "--wait")
    (run,) = client.list_runs()
    assert result.code == EXIT_RUN_FAILED
    assert result.out.splitlines()[-1] == f"run {run.id} failed at step explode: boom"


def test_wait_for_a_run_that_is_cancelled(cli: Cli, client: Client, worker: Worker) -> None:
    def cancel() -> None:
        (run,) = client.list_runs()
        client.cancel_run(run.id, reason="not today")

    timer = later(0.5, cancel)
    result = cli("runs", "start", "holding", "--wait", "--json")
    timer.join()
    data = stable_json(result.out)
    assert result.code == EXIT_RUN_CANCELLED
    assert (data["status"], data["created"]) == ("cancelled", True)


def test_a_wait_that_times_out_leaves_the_run_going(
    cli: Cli, client: Client, worker: Worker
) -> None:
    result = cli("runs", "start", "holding", "--wait", "--timeout", "0.5")
    (run,) = client.list_runs()
    assert result.code == EXIT_WAIT_TIMEOUT
    assert result.out.startswith(f"started run {run.id} of holding via hold ")
    assert result.err.splitlines()[-1] == (
        f"squidmesh: error: run {run.id} is still paused after 0.5s; it goes on"
    )
    assert client.inspect_run(run.id).status == "paused"


def test_waiting_with_the_in_process_executor(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, app_db: str
) -> None:
    monkeypatch.setenv("SQUIDMESH_APP", "tests.cli.app:inline_client")
    result = cli("runs", "start", "transfer", "--wait")
    assert result.code == EXIT_OK
    assert result.out.splitlines()[-1].endswith(" completed")
    assert result.err == ""  # finished before the wait began: nothing to wait for


# -- show --follow -------------------------------------------------------------------------


def test_follow_a_finished_run(cli: Cli, client: Client) -> None:
    run = client.start_run("transfer")
    drain(client)
    result = cli("runs", "show", run.id, "--follow")
    assert result.code == EXIT_OK
    assert progress(result.out) == ["step send_money attempt 1 completed", "run completed"]
    # Then the run, as 'runs show' prints it.
    shown = cli("runs", "show", run.id).out
    assert result.out.endswith(shown)


def test_follow_a_failed_run(cli: Cli, client: Client) -> None:
    run = client.start_run("failing")
    drain(client)
    result = cli("runs", "show", run.id, "--follow")
    assert result.code == EXIT_RUN_FAILED
    assert progress(result.out) == ["step explode attempt 1 failed: boom", "run failed"]


def test_follow_prints_progress_until_the_run_finishes(
    cli: Cli, client: Client, worker: Worker
) -> None:
    run = client.start_run("holding")

    def unblock() -> None:
        client.unblock_run(run.id, actor="ops")

    timer = later(1.0, unblock)
    result = cli("runs", "show", run.id, "--follow")
    timer.join()
    assert result.code == EXIT_OK
    lines = progress(result.out)
    assert lines[-1] == "run completed"
    paused = lines.index("run paused at step hold")
    resumed = lines.index("resumed at step hold by ops")
    assert paused < resumed < lines.index("step released attempt 1 completed")


def test_follow_with_json_prints_progress_on_stderr(
    cli: Cli, client: Client, worker: Worker
) -> None:
    run = client.start_run("transfer")
    result = cli("runs", "show", run.id, "--follow", "--json")
    assert result.code == EXIT_OK
    data = stable_json(result.out)
    assert (data["id"], data["status"]) == (run.id, "completed")
    assert [sr["step"] for sr in data["step_runs"]] == ["send_money"]
    assert "squidmesh: " in result.err
    assert result.err.rstrip().endswith("run completed")


def test_follow_times_out(cli: Cli, client: Client) -> None:
    run = client.start_run("holding")
    drain(client)
    result = cli("runs", "show", run.id, "--follow", "--timeout", "0.3")
    assert result.code == EXIT_WAIT_TIMEOUT
    assert progress(result.out) == ["step hold attempt 1 running", "run paused at step hold"]
    assert result.err == f"squidmesh: error: run {run.id} is still paused after 0.3s; it goes on\n"


def test_follow_an_unknown_run(cli: Cli, client: Client) -> None:
    result = cli("runs", "show", "0190e3a4-0000-7000-8000-000000000000", "--follow")
    assert_one_error_line(result, EXIT_FAILURE, "does not exist")
