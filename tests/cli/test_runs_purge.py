"""squidmesh runs purge: dry runs, real purges, filters and bad durations; worker --purge-after."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client
from squidmesh_sdk.cli import EXIT_USAGE
from squidmesh_sdk.cli.argument_types import MSG_BAD_DURATION
from squidmesh_sdk.store import schema
from tests.cli.support import Cli, assert_one_error_line, drain, stable_json

TABLES = (
    "squidmesh_jobs",
    "squidmesh_outbox",
    "squidmesh_run_events",
    "squidmesh_runs",
    "squidmesh_step_attempts",
    "squidmesh_step_runs",
)


def _age(client: Client, run_ids: list[str], days: int) -> None:
    """Make the runs look created and last changed ``days`` ago."""
    ago = timedelta(days=days)
    with client.runtime.transaction() as tx:
        tx.connection.execute(
            sa.update(schema.runs)
            .where(schema.runs.c.id.in_([uuid.UUID(run_id) for run_id in run_ids]))
            .values(inserted_at=tx.now - ago, updated_at=tx.now - ago)
        )


def _runs(client: Client) -> dict[str, str]:
    """Two old finished runs (completed, failed), an old paused one and a recent completed one."""
    ids = {}
    for name, workflow in (
        ("completed", "transfer"),
        ("failed", "failing"),
        ("paused", "holding"),
        ("recent", "transfer"),
    ):
        ids[name] = client.start_run(workflow).id
    drain(client)
    _age(client, [ids["completed"], ids["failed"], ids["paused"]], 40)
    return ids


def _left(client: Client) -> set[str]:
    return {run.id for run in client.list_runs()}


def test_a_dry_run_prints_what_would_go_and_deletes_nothing(cli: Cli, client: Client) -> None:
    ids = _runs(client)
    result = cli("runs", "purge", "--older-than", "30d", "--dry-run")
    assert (result.code, result.err) == (0, "")
    head, rows, listed = result.out.split("\n\n")
    assert head.startswith("dry run: 2 runs (completed/failed/cancelled) last changed before "), (
        head
    )
    assert head.endswith(" would be deleted; nothing was deleted")
    assert rows.splitlines()[0].split() == ["TABLE", "ROWS"]
    assert rows.splitlines()[1].split() == ["squidmesh_runs", "2"]
    assert listed.splitlines()[0] == "RUN_ID"
    assert set(listed.splitlines()[1:]) == {ids["completed"], ids["failed"]}
    assert _left(client) == set(ids.values())


def test_a_purge_deletes_old_finished_runs_only(cli: Cli, client: Client) -> None:
    ids = _runs(client)
    result = cli("runs", "purge", "--older-than", "30d")
    assert (result.code, result.err) == (0, "")
    head, rows = result.out.split("\n\n")
    assert head.startswith("purged 2 runs (completed/failed/cancelled) last changed before ")
    assert head.endswith(" in 2 batches")  # one per status
    counts = dict(line.split() for line in rows.splitlines()[1:])
    assert set(counts) == set(TABLES)
    assert (counts["squidmesh_runs"], counts["squidmesh_step_runs"]) == ("2", "2")
    assert _left(client) == {ids["paused"], ids["recent"]}
    again = cli("runs", "purge", "--older-than", "30d")
    assert again.out.startswith("purged 0 runs")


def test_json_and_filters(cli: Cli, client: Client) -> None:
    ids = _runs(client)
    dry = stable_json(
        cli(
            "runs", "purge", "--older-than", "720h", "--status", "failed", "--dry-run", "--json"
        ).out
    )
    assert set(dry) == {
        "batches",
        "cutoff",
        "dry_run",
        "kept_compensating",
        "rows",
        "run_ids",
        "runs",
        "statuses",
        "workflow",
    }
    assert (dry["dry_run"], dry["runs"], dry["run_ids"]) == (True, 1, [ids["failed"]])
    assert (dry["statuses"], dry["workflow"]) == (["failed"], None)
    assert set(dry["rows"]) == set(TABLES)

    done = stable_json(
        cli("runs", "purge", "--older-than", "43200m", "--workflow", "transfer", "--json").out
    )
    assert (done["dry_run"], done["runs"], done["run_ids"]) == (False, 1, [])
    assert done["rows"]["squidmesh_runs"] == 1
    assert _left(client) == {ids["failed"], ids["paused"], ids["recent"]}


def test_small_batches_purge_everything(cli: Cli, client: Client) -> None:
    ids = [client.start_run("transfer").id for _ in range(5)]
    drain(client)
    _age(client, ids, 2)
    result = cli("runs", "purge", "--older-than", "1d", "--batch-size", "2", "--json")
    assert (result.json()["runs"], result.json()["batches"]) == (5, 3)
    assert _left(client) == set()


@pytest.mark.parametrize("value", ["30", "0d", "30x", "-1d", "1.5d", "d", "", "30 days", "1e3d"])
def test_bad_durations_are_usage_errors(cli: Cli, app_db: str, value: str) -> None:
    result = cli("runs", "purge", f"--older-than={value}")
    expected = "runs purge: argument --older-than: " + MSG_BAD_DURATION.format(value=value)
    assert assert_one_error_line(result, EXIT_USAGE).startswith(expected)


def test_a_huge_duration_is_a_usage_error(cli: Cli, app_db: str) -> None:
    assert_one_error_line(
        cli("runs", "purge", "--older-than", "99999999999d"), EXIT_USAGE, "is not a duration"
    )


def test_older_than_is_required_and_unfinished_statuses_are_refused(
    cli: Cli, client: Client
) -> None:
    ids = _runs(client)
    assert_one_error_line(
        cli("runs", "purge"), EXIT_USAGE, "the following arguments are required: --older-than"
    )
    for status in ("paused", "running", "pending"):
        refused = cli("runs", "purge", "--older-than", "1d", "--status", status)
        assert_one_error_line(refused, EXIT_USAGE, f"invalid choice: '{status}'")
    assert _left(client) == set(ids.values())


def test_worker_purge_after(cli: Cli, app_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from squidmesh_sdk.cli import commands
    from tests.cli.test_worker import RecordingWorker

    RecordingWorker.built = []
    monkeypatch.setattr(commands, "Worker", RecordingWorker)
    assert cli("worker").code == 0
    assert cli("worker", "--purge-after", "12h").code == 0
    default, purging = RecordingWorker.built
    assert (default.purge_after, purging.purge_after) == (None, timedelta(hours=12))
    bad = cli("worker", "--purge-after", "soon")
    assert_one_error_line(bad, EXIT_USAGE, "worker: argument --purge-after: 'soon' is not")
