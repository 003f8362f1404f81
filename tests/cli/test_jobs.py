"""squidmesh jobs list / show / retry / discard / stats: the database queue, as operators see it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, Worker
from squidmesh_sdk.cli import EXIT_FAILURE, EXIT_USAGE
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store import schema
from squidmesh_sdk.testing import FakeClock
from tests.cli.conftest import use_app
from tests.cli.ops_app import INLINE_APP, OPS_APP, make_client
from tests.cli.support import Cli, assert_one_error_line, drain, stable_json

OWNER = "host-a:4242:worker"
BOOM = {"message": "connection reset by peer", "type": "builtins.ConnectionError"}

JOB_KEYS = {
    "concurrency_key",
    "concurrency_limit",
    "definition_version",
    "deliveries",
    "id",
    "inserted_at",
    "kind",
    "last_error",
    "locked_by",
    "locked_until",
    "payload",
    "priority",
    "queue",
    "rescues",
    "run_at",
    "run_id",
    "state",
    "status",
    "step",
    "updated_at",
    "workflow",
}


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The ops app on this test's migrated database, ``SQUIDMESH_APP`` pointing at it."""
    use_app(monkeypatch, database_url, OPS_APP)
    with make_client() as ops_client:
        yield ops_client


def _lease_next(client: Client, worker: str = OWNER) -> job_store.Job:
    """Lease the oldest due job to ``worker``, as a worker's claim does."""
    with client.runtime.transaction() as tx:
        (job,) = claim_store.claim(tx, worker=worker, queues=("default",), limit=1, lease=300)
    return job


def _dead_letter(client: Client) -> job_store.Job:
    """Lease the oldest due job, then give up on it as a worker does after max_deliveries."""
    job = _lease_next(client)
    with client.runtime.transaction() as tx:
        assert job_store.fail(tx, job.id, worker=OWNER, error=BOOM)
    return job


def _jobs(client: Client) -> list[job_store.Job]:
    with client.database.read() as connection:
        return job_store.list_jobs(connection)


def _every_state(client: Client) -> dict[str, Any]:
    """One job in each state, each of another run."""
    failed_run = client.start_run("one_step")
    failed = _dead_letter(client)
    running_run = client.start_run("shipping")
    running = _lease_next(client)
    delayed_run = client.start_run("slow_retry")
    drain(client)  # its first attempt fails: the retry waits a minute
    delayed = _jobs(client)[-1]
    queued_run = client.start_run("saga_checkout", {"order_id": "o-1", "amount_cents": 500})
    queued = _jobs(client)[-1]
    return {
        "failed": (failed.id, failed_run.id),
        "running": (running.id, running_run.id),
        "delayed": (delayed.id, delayed_run.id),
        "queued": (queued.id, queued_run.id),
    }


# -- list ----------------------------------------------------------------------------------


def test_list_shows_each_state_with_owner_lease_and_last_error(cli: Cli, client: Client) -> None:
    made = _every_state(client)
    result = cli("jobs", "list")
    assert (result.code, result.err) == (0, "")
    header, *rows = result.out.splitlines()
    assert header.split() == [
        "ID",
        "QUEUE",
        "STATE",
        "KIND",
        "WORKFLOW",
        "STEP",
        "RUN",
        "DELIVERIES",
        "DUE_AT",
        "WORKER",
        "LEASE_UNTIL",
        "LAST_ERROR",
    ]
    cells = {row.split()[2]: row.split(maxsplit=11) for row in rows}
    assert set(cells) == {"failed", "running", "delayed", "queued"}
    failed = cells["failed"]
    assert failed[:8] == [
        str(made["failed"][0]),
        "default",
        "failed",
        "step",
        "one_step",
        "only",
        made["failed"][1],
        "1",
    ]
    assert failed[9:] == ["-", "-", "connection reset by peer"]
    running = cells["running"]
    assert running[4:8] == ["shipping", "pack", made["running"][1], "1"]
    assert running[9] == OWNER
    assert datetime.fromisoformat(running[10]) > datetime.now(UTC)  # the lease's expiry
    delayed = cells["delayed"]
    assert delayed[4:6] == ["slow_retry", "fails_once"]
    assert datetime.fromisoformat(delayed[8]) > datetime.now(UTC)  # due in a minute
    assert delayed[9:] == ["-", "-", "-"]  # a retry is a new job: no delivery of it failed
    queued = cells["queued"]
    assert queued[4:8] == ["saga_checkout", "reserve_inventory", made["queued"][1], "0"]


def test_list_json_and_filters(cli: Cli, client: Client) -> None:
    made = _every_state(client)
    data = stable_json(cli("jobs", "list", "--json").out)
    assert set(data) == {"jobs", "total"}
    assert data["total"] == 4
    assert all(set(job) == JOB_KEYS for job in data["jobs"])
    by_state = {job["state"]: job for job in data["jobs"]}
    assert by_state["failed"]["last_error"] == BOOM
    assert by_state["failed"]["status"] == "failed"
    assert by_state["running"]["locked_by"] == OWNER
    assert by_state["delayed"]["status"] == "queued"  # the row's status; state tells them apart
    assert [job["id"] for job in data["jobs"]] == sorted(job["id"] for job in data["jobs"])

    def ids(*argv: str) -> list[int]:
        return [job["id"] for job in stable_json(cli("jobs", "list", "--json", *argv).out)["jobs"]]

    for state, (job_id, run_id) in made.items():
        assert ids("--status", state) == [job_id]
        assert ids("--run", run_id) == [job_id]
    assert ids("--status", "queued", "--status", "delayed") == sorted(
        [made["queued"][0], made["delayed"][0]]
    )
    assert ids("--workflow", "shipping") == [made["running"][0]]
    assert ids("--queue", "default") == sorted(job_id for job_id, _ in made.values())
    assert ids("--queue", "payments") == []
    limited = stable_json(cli("jobs", "list", "--json", "--limit", "2").out)
    assert (len(limited["jobs"]), limited["total"]) == (2, 4)
    text = cli("jobs", "list", "--limit", "2").out.splitlines()
    assert text[-1] == "showing 2 of 4 jobs; pass --limit or filters to see others"


def test_list_an_empty_queue(cli: Cli, client: Client) -> None:
    assert cli("jobs", "list").out == "no jobs\n"
    assert stable_json(cli("jobs", "list", "--json").out) == {"jobs": [], "total": 0}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["list", "--status", "stuck"], "jobs list: argument --status: invalid choice: 'stuck'"),
        (["list", "--run", "r-1"], "jobs list: argument --run: 'r-1' is not a run id (a UUID)"),
        (["list", "--limit", "0"], "jobs list: argument --limit: '0' is not a positive integer"),
        (
            ["show", "seven"],
            "jobs show: argument JOB_ID: 'seven' is not a job id (a number, as 'jobs list' "
            "prints it)",
        ),
        (["retry"], "jobs retry: the following arguments are required: JOB_ID"),
    ],
)
def test_usage_errors(cli: Cli, client: Client, argv: list[str], expected: str) -> None:
    message = assert_one_error_line(cli("jobs", *argv), EXIT_USAGE)
    assert message.startswith(expected), message


def test_jobs_need_the_database_queue(
    cli: Cli, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_app(monkeypatch, database_url, INLINE_APP)
    message = assert_one_error_line(cli("jobs", "list"), EXIT_USAGE)
    assert message == (
        "'squidmesh jobs' reads the database queue, but the app's client uses InlineExecutor, "
        "which keeps no jobs in the database"
    )


# -- show ----------------------------------------------------------------------------------


def test_show_a_dead_letter_says_what_can_be_done(cli: Cli, client: Client) -> None:
    run = client.start_run("one_step")
    job = _dead_letter(client)
    result = cli("jobs", "show", str(job.id))
    assert (result.code, result.err) == (0, "")
    lines = result.out.splitlines()
    assert lines[:7] == [
        f"job          {job.id}",
        "queue        default",
        "state        failed",
        "kind         step",
        "workflow     one_step",
        f"version      {client.workflows['one_step'].version}",
        "step         only",
    ]
    assert f"run          {run.id} (pending)" in lines  # its step never got started
    assert "deliveries   1" in lines
    assert "last error   builtins.ConnectionError: connection reset by peer" in lines
    assert lines[-2:] == [
        f"next         squidmesh jobs retry {job.id}",
        f"             squidmesh jobs discard {job.id}",
    ]
    data = stable_json(cli("jobs", "show", str(job.id), "--json").out)
    assert set(data) == JOB_KEYS | {"run_status"}
    assert (data["state"], data["run_status"], data["last_error"]) == ("failed", "pending", BOOM)


def test_explain_names_a_dead_letter_that_keeps_a_run_from_starting(
    cli: Cli, client: Client
) -> None:
    run = client.start_run("one_step")
    job = _dead_letter(client)  # its first step's job, given up on before any step started
    explained = client.explain_run(run.id)
    assert (explained.status, explained.reason) == ("pending", "job_dead_lettered")
    assert explained.details["job_id"] == job.id
    assert explained.details["last_error"] == BOOM
    assert explained.next_actions == ("retry_job", "cancel_run")


def test_explain_adds_a_dead_compensation_to_a_failed_run(cli: Cli, client: Client) -> None:
    # The run failed (its last step refused the address); its saga compensation's job was
    # given up on: the failure is explained as before, and the job is named to retry.
    run = client.start_run("refund_saga")
    while client.inspect_run(run.id).status != "failed":
        job = _lease_next(client)
        client.perform(job.payload)
        with client.runtime.transaction() as tx:
            job_store.complete(tx, job.id, worker=OWNER)
    compensation = _dead_letter(client)
    assert compensation.kind == "compensation"
    explained = client.explain_run(run.id)
    assert (explained.reason, explained.step) == ("step_failed", "ship")
    assert explained.details["dead_lettered_job"]["job_id"] == compensation.id
    assert explained.details["dead_lettered_job"]["job_kind"] == "compensation"
    assert explained.next_actions[0] == "retry_job"
    shown = cli("runs", "explain", run.id).out
    assert f"next     squidmesh jobs retry {compensation.id}\n" in shown


def test_show_a_running_job_with_an_expired_lease(cli: Cli, client: Client) -> None:
    client.start_run("shipping")
    job = _lease_next(client)
    with client.runtime.transaction() as tx:  # its worker stopped renewing the lease long ago
        tx.connection.execute(
            sa.update(schema.jobs)
            .where(schema.jobs.c.id == job.id)
            .values(locked_until=tx.now - timedelta(seconds=60))
        )
    lines = cli("jobs", "show", str(job.id)).out.splitlines()
    assert "state        running" in lines
    assert f"worker       {OWNER}" in lines
    (lease,) = [line for line in lines if line.startswith("lease until")]
    assert lease.endswith("(expired: a worker's next rescue pass queues the job again)")


def test_show_an_unknown_job(cli: Cli, client: Client) -> None:
    message = assert_one_error_line(cli("jobs", "show", "4711"), EXIT_FAILURE)
    assert message == "job 4711 does not exist (a job is deleted once its work is recorded)"


# -- retry and discard ---------------------------------------------------------------------


def test_retry_puts_a_dead_letter_back_due_now(cli: Cli, client: Client) -> None:
    run = client.start_run("one_step")
    job = _dead_letter(client)
    result = cli("jobs", "retry", str(job.id))
    assert (result.code, result.err) == (0, "")
    assert result.out == (
        f"retried job {job.id} (step 'only'): queued on 'default', due now, with a fresh budget "
        "of deliveries; a worker of that queue takes it\n"
    )
    (retried,) = _jobs(client)
    assert (retried.status, retried.deliveries, retried.locked_by) == ("queued", 0, None)
    assert retried.last_error == BOOM  # kept: the next delivery takes over the step
    assert retried.run_at <= client.clock.now()
    drain(client)
    assert client.inspect_run(run.id).status == "completed"
    assert _jobs(client) == []


def test_retry_and_discard_refuse_jobs_that_are_not_failed(cli: Cli, client: Client) -> None:
    client.start_run("shipping")
    queued = _jobs(client)[0]
    for action in ("retry", "discard"):
        message = assert_one_error_line(cli("jobs", action, str(queued.id)), EXIT_FAILURE)
        done = "retried" if action == "retry" else "discarded"
        assert message == (
            f"job {queued.id} is queued, not failed: only a failed job (a dead letter) can be "
            f"{done}"
        )
    running = _lease_next(client)
    message = assert_one_error_line(cli("jobs", "retry", str(running.id)), EXIT_FAILURE)
    assert message.startswith(f"job {running.id} is running, not failed")
    assert_one_error_line(cli("jobs", "retry", "999"), EXIT_FAILURE, "job 999 does not exist")


def test_discard_refuses_a_job_its_run_waits_for_unless_forced(cli: Cli, client: Client) -> None:
    run = client.start_run("one_step")
    job = _dead_letter(client)
    message = assert_one_error_line(cli("jobs", "discard", str(job.id)), EXIT_FAILURE)
    assert message == (
        f"job {job.id} is step 'only' of run {run.id}, which is pending and waits for it: "
        "discarding it leaves the run pending for good. Retry it instead "
        f"('squidmesh jobs retry {job.id}'); to stop the run, cancel it "
        f"('squidmesh runs cancel {run.id}') and then retry the job, whose next delivery "
        "finishes the cancellation; or pass --force to discard it anyway"
    )
    assert [j.id for j in _jobs(client)] == [job.id]

    result = cli("jobs", "discard", str(job.id), "--force")
    assert (result.code, result.err) == (0, "")
    assert result.out == (
        f"discarded job {job.id} (step 'only'); run {run.id} stays pending and will not go on: "
        "nothing delivers its step 'only' again\n"
    )
    assert _jobs(client) == []
    assert client.inspect_run(run.id).status == "pending"


def test_discard_a_dead_letter_of_a_finished_run(cli: Cli, client: Client) -> None:
    """A duplicate delivery's job, failed after another delivery finished the run."""
    run = client.start_run("one_step")
    job = _lease_next(client)
    client.perform(job.payload)  # another delivery of the same step completes the run
    with client.runtime.transaction() as tx:
        assert job_store.fail(tx, job.id, worker=OWNER, error=BOOM)
    assert client.inspect_run(run.id).status == "completed"
    result = cli("jobs", "discard", str(job.id))
    assert (result.code, result.err) == (0, "")
    assert result.out == (
        f"discarded job {job.id} (step 'only'); run {run.id} is completed: nothing waited for "
        "this job\n"
    )
    assert _jobs(client) == []


def test_discard_a_cron_activation(cli: Cli, client: Client) -> None:
    with client.runtime.transaction() as tx:
        client.executor.enqueue_cron(tx, "daily_digest", "daily_digest")
    job = _dead_letter(client)
    data = stable_json(cli("jobs", "discard", str(job.id), "--json").out)
    assert set(data) == {"discarded", "run_id", "run_status", "run_stranded"}
    assert data["discarded"]["kind"] == "cron"
    assert (data["run_id"], data["run_status"], data["run_stranded"]) == (None, None, False)
    assert _jobs(client) == []
    with client.runtime.transaction() as tx:
        client.executor.enqueue_cron(tx, "daily_digest", "daily_digest")
    job = _dead_letter(client)
    assert cli("jobs", "discard", str(job.id)).out == (
        f"discarded job {job.id} (cron trigger 'daily_digest' of 'daily_digest'); the cron "
        "window it would have started does not run\n"
    )


def test_retry_json_prints_the_job(cli: Cli, client: Client) -> None:
    client.start_run("one_step")
    job = _dead_letter(client)
    data = stable_json(cli("jobs", "retry", str(job.id), "--json").out)
    assert set(data) == JOB_KEYS
    assert (data["id"], data["state"], data["deliveries"]) == (job.id, "queued", 0)


# -- the whole path: a delivery that keeps failing, then a retry ---------------------------


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("fix", ["fixed", "cancelled"])
def test_a_dead_letter_retried_with_the_cli_lets_its_run_complete(
    cli: Cli, database_url: str, monkeypatch: pytest.MonkeyPatch, fix: str
) -> None:
    """A worker's delivery raises max_deliveries (2) times: the job is kept as failed, the run
    stays running. After the cause is fixed, 'jobs retry' queues it again and the run completes;
    or the operator cancels the run and retries the job, and its delivery cancels the run.
    """
    from squidmesh_sdk.runtime import execution

    use_app(monkeypatch, database_url, OPS_APP)
    write_outcome = execution._apply_and_settle
    broken = [True]

    def outcome_cannot_be_written(*args: object, **kwargs: object) -> None:
        if broken[0]:
            raise RuntimeError("the outcome could not be written")
        write_outcome(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(execution, "_apply_and_settle", outcome_cannot_be_written)
    clock = FakeClock(datetime.now(UTC))  # the worker's: skips its retry backoff
    with make_client(clock) as client:
        run = client.start_run("one_step")
        worker = Worker(client, max_deliveries=2, poll_interval=0.02, cron=False, name=OWNER)
        worker.start()
        try:
            _wait_until(
                lambda: [(j.status, j.deliveries) for j in _jobs(client)] == [("queued", 1)],
                "the first failed delivery",
            )
            clock.advance(3600)  # past the backoff
            _wait_until(lambda: [j.status for j in _jobs(client)] == ["failed"], "the dead letter")
            (job,) = _jobs(client)
            listed = cli("jobs", "list", "--status", "failed").out.splitlines()
            assert listed[1].split(maxsplit=11)[2:8] == [
                "failed",
                "step",
                "one_step",
                "only",
                run.id,
                "2",
            ]
            assert listed[1].endswith("the outcome could not be written")
            assert client.inspect_run(run.id).status == "running"
            # What keeps the run running is the dead letter, not its step: explain says so.
            explained = client.explain_run(run.id)
            assert (explained.reason, explained.step) == ("job_dead_lettered", "only")
            assert explained.next_actions == ("retry_job", "cancel_run")
            assert explained.details["job_id"] == job.id
            assert explained.details["deliveries"] == 2
            assert "the outcome could not be written" in str(explained.details["last_error"])
            shown = cli("runs", "explain", run.id).out
            assert f"next     squidmesh jobs retry {job.id}\n" in shown

            if fix == "fixed":
                broken[0] = False  # the cause is fixed
            else:
                assert cli("runs", "cancel", run.id).code == 0
                assert client.inspect_run(run.id).status == "cancelling"
                # A cancel cannot close the step nobody delivers: the job must be retried.
                explained = client.explain_run(run.id)
                assert explained.reason == "job_dead_lettered"
                assert explained.next_actions == ("retry_job",)
            result = cli("jobs", "retry", str(job.id))
            assert (result.code, result.err) == (0, "")
            expected = "completed" if fix == "fixed" else "cancelled"
            _wait_until(lambda: client.inspect_run(run.id).status == expected, "the run")
        finally:
            worker.stop()
        assert _jobs(client) == []
    if fix == "cancelled":
        return
    shown = stable_json(cli("runs", "show", run.id, "--json").out)
    (step_run,) = shown["step_runs"]
    # Each failed delivery left its attempt running; the next one took the step over.
    assert [a["status"] for a in step_run["attempts"]] == ["abandoned", "abandoned", "completed"]


# -- stats ---------------------------------------------------------------------------------


def test_stats_per_queue(cli: Cli, client: Client) -> None:
    empty = cli("jobs", "stats")
    assert empty.out.splitlines() == [
        "QUEUE    QUEUED  DELAYED  RUNNING  FAILED  OLDEST_DUE_FOR  LIMITS",
        "default  0       0        0        0       -               -",
    ]
    _every_state(client)
    client.start_run("shipping")  # a second due job
    rows = cli("jobs", "stats").out.splitlines()
    assert rows[1].split()[:5] == ["default", "2", "1", "1", "1"]
    data = stable_json(cli("jobs", "stats", "--json").out)
    assert set(data) == {"at", "queues"}
    (queue,) = data["queues"]
    assert set(queue) == {
        "delayed",
        "failed",
        "limits",
        "oldest_due_at",
        "oldest_due_seconds",
        "queue",
        "queued",
        "running",
    }
    assert (queue["queue"], queue["queued"], queue["delayed"]) == ("default", 2, 1)
    assert (queue["running"], queue["failed"]) == (1, 1)
    oldest = datetime.fromisoformat(queue["oldest_due_at"])
    assert queue["oldest_due_seconds"] == pytest.approx(
        (datetime.fromisoformat(data["at"]) - oldest).total_seconds()
    )
    assert queue["oldest_due_seconds"] >= 0
    assert queue["limits"] is None
