"""``squidmesh jobs``: the database queue's jobs and dead letters, and the depth of each queue.

An operator's database tool: it reads and repairs ``squidmesh_jobs`` through
:mod:`squidmesh_sdk.store.jobs` (the ``Client`` has no job API; jobs belong to the
``DatabaseExecutor``), and reads runs through the client.

- ``jobs list`` / ``jobs show`` print jobs in the state an operator sees: ``queued`` (due),
  ``delayed`` (a retry backoff or a wait, due later), ``running`` (leased to a worker, with its
  lease expiry) and ``failed`` (a dead letter, with its last error).
- ``jobs retry`` puts a dead letter back in its queue, due now, with a fresh delivery budget.
- ``jobs discard`` deletes a dead letter; it refuses one whose run still waits for it (the run
  would never go on) unless ``--force``.
- ``jobs stats`` prints per queue the jobs in each state and how long its oldest due job has
  waited.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from squidmesh_sdk.cli import render
from squidmesh_sdk.cli.commands import Context
from squidmesh_sdk.cli.errors import EXIT_OK, CommandFailed
from squidmesh_sdk.cli.queues import database_queue_client, limits_dict
from squidmesh_sdk.client import Client
from squidmesh_sdk.errors import RunNotFound
from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.state_machine import TERMINAL
from squidmesh_sdk.store import flow as flow_store
from squidmesh_sdk.store import job_admin
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.flow import QueueLimits
from squidmesh_sdk.store.jobs import Job
from squidmesh_sdk.store.records import Run

__all__ = [
    "MSG_JOBS_NEED_DATABASE_EXECUTOR",
    "MSG_NOT_FAILED",
    "MSG_NO_SUCH_JOB",
    "MSG_RUN_WAITS",
    "jobs_discard",
    "jobs_list",
    "jobs_retry",
    "jobs_show",
    "jobs_stats",
]

MSG_JOBS_NEED_DATABASE_EXECUTOR = (
    "'squidmesh jobs' reads the database queue, but the app's client uses {executor}, "
    "which keeps no jobs in the database"
)
MSG_NO_SUCH_JOB = "job {job_id} does not exist (a job is deleted once its work is recorded)"
MSG_NOT_FAILED = (
    "job {job_id} is {state}, not failed: only a failed job (a dead letter) can be {action}"
)
MSG_RUN_WAITS = (
    "job {job_id} is {what} of run {run_id}, which is {status} and waits for it: discarding it "
    "leaves the run {status} for good. Retry it instead ('squidmesh jobs retry {job_id}'); to "
    "stop the run, cancel it ('squidmesh runs cancel {run_id}') and then retry the job, whose "
    "next delivery finishes the cancellation; or pass --force to discard it anyway"
)
MSG_COMPENSATION_WAITS = (
    "job {job_id} is the saga compensation of run {run_id}: discarding it means the run's "
    "remaining compensation callbacks never run. Retry it instead "
    "('squidmesh jobs retry {job_id}'), or pass --force to discard it anyway"
)

_HEADERS = (
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
)


def jobs_list(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh jobs list``: jobs oldest first, filtered; a table or JSON."""
    client = database_queue_client(ctx, MSG_JOBS_NEED_DATABASE_EXECUTOR)
    now = client.clock.now()
    filters: dict[str, Any] = {
        "states": args.states,
        "queue": args.queue,
        "workflow": args.workflow,
        "run_id": args.run,
    }
    with client.database.read() as connection:
        found = job_admin.find_jobs(connection, now=now, limit=args.limit, **filters)
        total = (
            len(found)
            if len(found) < args.limit
            else job_admin.count_jobs(connection, now=now, **filters)
        )
    if args.json:
        ctx.write(render.to_json({"jobs": [job_dict(job, now) for job in found], "total": total}))
        return EXIT_OK
    if not found:
        ctx.write("no jobs")
        return EXIT_OK
    ctx.write(render.table(_HEADERS, (_row(job, now) for job in found)))
    if total > len(found):
        ctx.write(f"showing {len(found)} of {total} jobs; pass --limit or filters to see others")
    return EXIT_OK


def jobs_show(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh jobs show JOB_ID``: every field of one job, and what can be done with it."""
    client = database_queue_client(ctx, MSG_JOBS_NEED_DATABASE_EXECUTOR)
    now = client.clock.now()
    job = _get(client, args.job_id)
    run = _run_of(client, job)
    if args.json:
        data = job_dict(job, now)
        data["run_status"] = run.status if run is not None else None
        ctx.write(render.to_json(data))
        return EXIT_OK
    ctx.write(_job_text(job, run, now))
    return EXIT_OK


def jobs_retry(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh jobs retry JOB_ID``: a dead letter back to its queue, due now."""
    client = database_queue_client(ctx, MSG_JOBS_NEED_DATABASE_EXECUTOR)
    job = _get(client, args.job_id)
    if job.status != "failed":
        raise CommandFailed(_not_failed(job, client, "retried"))
    with client.runtime.transaction() as tx:
        retried = job_admin.requeue_failed(tx, job.id)
    if retried is None:  # another operator or process got there first
        current = _get(client, args.job_id)
        raise CommandFailed(_not_failed(current, client, "retried"))
    now = client.clock.now()
    if args.json:
        ctx.write(render.to_json(job_dict(retried, now)))
        return EXIT_OK
    ctx.write(
        f"retried job {retried.id} ({_what(retried)}): queued on {retried.queue!r}, due now, "
        "with a fresh budget of deliveries; a worker of that queue takes it"
    )
    return EXIT_OK


def jobs_discard(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh jobs discard JOB_ID [--force]``: delete a dead letter."""
    client = database_queue_client(ctx, MSG_JOBS_NEED_DATABASE_EXECUTOR)
    job = _get(client, args.job_id)
    if job.status != "failed":
        raise CommandFailed(_not_failed(job, client, "discarded"))
    run = _run_of(client, job)
    stranded = _waits_for(job, run)
    if stranded and not args.force:
        assert run is not None  # noqa: S101 - only a job with a run strands one
        if job.kind == "compensation":
            raise CommandFailed(MSG_COMPENSATION_WAITS.format(job_id=job.id, run_id=run.id))
        raise CommandFailed(
            MSG_RUN_WAITS.format(job_id=job.id, what=_what(job), run_id=run.id, status=run.status)
        )
    with client.runtime.transaction() as tx:
        deleted = job_admin.delete_failed(tx, job.id)
    if not deleted:
        current = _get(client, args.job_id)
        raise CommandFailed(_not_failed(current, client, "discarded"))
    if args.json:
        ctx.write(
            render.to_json(
                {
                    "discarded": job_dict(job, client.clock.now()),
                    "run_id": run.id if run is not None else None,
                    "run_status": run.status if run is not None else None,
                    "run_stranded": stranded,
                }
            )
        )
        return EXIT_OK
    ctx.write(f"discarded job {job.id} ({_what(job)}); {_consequence(job, run, stranded)}")
    return EXIT_OK


def jobs_stats(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh jobs stats``: per queue, jobs in each state and the oldest due job's wait."""
    client = database_queue_client(ctx, MSG_JOBS_NEED_DATABASE_EXECUTOR)
    now = client.clock.now()
    with client.database.read() as connection:
        stats = {s.queue: s for s in job_admin.queue_stats(connection, now)}
        limits = {found.queue: found for found in flow_store.list_limits(connection)}
    executor = client.executor
    assert isinstance(executor, DatabaseExecutor)  # noqa: S101 - checked by database_queue_client
    if executor.queue not in stats:  # the app's queue, even when it is empty
        stats[executor.queue] = job_admin.QueueStats(
            queue=executor.queue, queued=0, delayed=0, running=0, failed=0, oldest_due_at=None
        )
    ordered = [stats[name] for name in sorted(stats)]
    if args.json:
        ctx.write(
            render.to_json(
                {
                    "at": now,
                    "queues": [
                        {
                            **dataclasses.asdict(s),
                            "oldest_due_seconds": _age(s.oldest_due_at, now),
                            "limits": limits_dict(limits[s.queue], now, None)
                            if s.queue in limits
                            else None,
                        }
                        for s in ordered
                    ],
                }
            )
        )
        return EXIT_OK
    ctx.write(
        render.table(
            ("QUEUE", "QUEUED", "DELAYED", "RUNNING", "FAILED", "OLDEST_DUE_FOR", "LIMITS"),
            (
                (
                    s.queue,
                    s.queued,
                    s.delayed,
                    s.running,
                    s.failed,
                    render.duration(_age(s.oldest_due_at, now)),
                    _limits_text(limits.get(s.queue)),
                )
                for s in ordered
            ),
        )
    )
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------


def job_dict(job: Job, now: datetime) -> dict[str, Any]:
    """A job as JSON: its attributes, and ``state`` (``queued``, ``delayed``, ``running``...).

    One key per attribute of :class:`~squidmesh_sdk.store.jobs.Job`, plus ``state``.
    """
    data = {field.name: getattr(job, field.name) for field in dataclasses.fields(job)}
    data["state"] = job_admin.job_state(job, now)
    return data


def _limits_text(limits: QueueLimits | None) -> str:
    if limits is None:
        return "-"
    parts = []
    if limits.concurrency is not None:
        parts.append(f"concurrency {limits.concurrency}")
    if limits.rate is not None:
        parts.append(f"rate {limits.rate.describe()}")
    return ", ".join(parts)


def _get(client: Client, job_id: int) -> Job:
    with client.database.read() as connection:
        job = job_store.get_job(connection, job_id)
    if job is None:
        raise CommandFailed(MSG_NO_SUCH_JOB.format(job_id=job_id))
    return job


def _run_of(client: Client, job: Job) -> Run | None:
    if job.run_id is None:
        return None
    try:
        return client.inspect_run(job.run_id)
    except RunNotFound:  # deleted meanwhile (its jobs go with it)
        return None


def _waits_for(job: Job, run: Run | None) -> bool:
    """Whether deleting ``job`` leaves its run waiting for work nobody will deliver."""
    if run is None:
        return False
    if job.kind == "compensation":
        return True  # the rollback of a failed run: the run is finished, its callbacks not
    return run.status not in TERMINAL


def _consequence(job: Job, run: Run | None, stranded: bool) -> str:
    if job.kind == "cron":
        return "the cron window it would have started does not run"
    if run is None:
        return "its run no longer exists"
    if job.kind == "compensation":
        return (
            f"the remaining compensation callbacks of run {run.id} will not run"
            if stranded
            else f"run {run.id} is {run.status}"
        )
    if stranded:
        return (
            f"run {run.id} stays {run.status} and will not go on: nothing delivers its step "
            f"{job.step!r} again"
        )
    return f"run {run.id} is {run.status}: nothing waited for this job"


def _not_failed(job: Job, client: Client, action: str) -> str:
    state = job_admin.job_state(job, client.clock.now())
    return MSG_NOT_FAILED.format(job_id=job.id, state=state, action=action)


def _what(job: Job) -> str:
    if job.kind == "step":
        return f"step {job.step!r}"
    if job.kind == "cron":
        trigger = job.payload.get("trigger")
        return f"cron trigger {trigger!r} of {job.workflow!r}"
    return job.kind


def _row(job: Job, now: datetime) -> tuple[object, ...]:
    return (
        job.id,
        job.queue,
        job_admin.job_state(job, now),
        job.kind,
        job.workflow,
        job.step,
        job.run_id,
        job.deliveries,
        job.run_at,
        job.locked_by,
        job.locked_until,
        render.error_text(job.last_error),
    )


def _job_text(job: Job, run: Run | None, now: datetime) -> str:
    state = job_admin.job_state(job, now)
    pairs: list[tuple[str, str]] = [
        ("job", str(job.id)),
        ("queue", job.queue),
        ("state", state),
        ("kind", job.kind),
        ("workflow", job.workflow or "-"),
        ("version", job.definition_version or "-"),
        ("step", job.step or "-"),
    ]
    if job.run_id is not None:
        pairs.append(("run", f"{job.run_id} ({run.status})" if run else f"{job.run_id} (gone)"))
    pairs += [
        ("due at", render.human_time(job.run_at)),
        ("deliveries", str(job.deliveries)),
        ("rescues", str(job.rescues)),
        ("worker", job.locked_by or "-"),
        ("lease until", _lease(job, now)),
        ("inserted at", render.human_time(job.inserted_at)),
        ("updated at", render.human_time(job.updated_at)),
        ("payload", render.compact(job.payload)),
    ]
    if job.last_error:
        pairs.append(("last error", _error_line(job.last_error)))
    if state == "failed":
        pairs.append(("next", f"squidmesh jobs retry {job.id}"))
        pairs.append(("", f"squidmesh jobs discard {job.id}"))
    text = render.fields_text(pairs)
    traceback = job.last_error.get("traceback") if job.last_error else None
    if isinstance(traceback, str) and traceback.strip():
        text += "\n" + traceback.rstrip("\n") + "\n"
    return text


def _lease(job: Job, now: datetime) -> str:
    if job.locked_until is None:
        return "-"
    until = render.human_time(job.locked_until)
    if job.status == "running" and job.locked_until < now:
        return f"{until} (expired: a worker's next rescue pass queues the job again)"
    return until


def _error_line(error: Mapping[str, Any]) -> str:
    message = render.error_text(error) or "-"
    kind = error.get("type")
    return f"{kind}: {message}" if isinstance(kind, str) and kind else message


def _age(since: datetime | None, now: datetime) -> float | None:
    if since is None:
        return None
    return max((now - since).total_seconds(), 0.0)
