"""Why a run's work is not taken: a concurrency key, a queue limit, a rate limit, a dead letter.

``explain_run`` asks :func:`find_hold` about runs that wait for a step to start. It reads the
run's due step jobs of the database queue (other executors keep no jobs here: nothing is
found) and checks each, in claim order, against the limits a claim would apply, with the
counts as they are now. It asks :func:`find_dead_letter` about every run that is not
finished, and about failed runs (their saga compensation): a job kept ``failed`` after its
last delivery is delivered again only when an operator retries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import flow as flow_store
from squidmesh_sdk.store import jobs as job_store

__all__ = ["HOLD_ACTIONS", "Hold", "find_dead_letter", "find_hold"]

HOLD_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "waiting_for_concurrency_limit": ("wait_for_concurrency_slot", "cancel_run"),
    "waiting_for_queue_limit": (
        "wait_for_queue_slot",
        "set_queue_limits",
        "clear_queue_limits",
        "cancel_run",
    ),
    "rate_limited": ("wait_for_rate_limit", "set_queue_limits", "clear_queue_limits", "cancel_run"),
}
"""What an operator can do about each kind of hold."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A due step job of the run that a limit keeps queued."""

    reason: str
    step: str | None
    details: Mapping[str, Any] = field(default_factory=dict)


def find_hold(connection: Connection, run_id: str, now: datetime) -> Hold | None:
    """The first of the run's due step jobs (in claim order) that a limit holds back, if any."""
    due = [
        job
        for job in job_store.list_jobs(connection, run_id=run_id, status="queued")
        if job.kind == "step" and job.run_at <= now
    ]
    if not due:
        return None
    limits = {
        limits.queue: limits
        for limits in flow_store.list_limits(connection, sorted({job.queue for job in due}))
    }
    keys = sorted({job.concurrency_key for job in due if job.concurrency_key is not None})
    running_keys = flow_store.running_per_key(connection, keys)
    running_queues = flow_store.running_per_queue(connection, list(limits))
    for job in sorted(due, key=claim_store.claim_order):
        key, limit = job.concurrency_key, job.concurrency_limit
        if key is not None and limit is not None and running_keys.get(key, 0) >= limit:
            details = {
                "concurrency_key": key,
                "limit": limit,
                "running": running_keys.get(key, 0),
                "queue": job.queue,
                "queued_since": job.run_at.isoformat(),
            }
            return Hold("waiting_for_concurrency_limit", job.step, details)
        queue_limits = limits.get(job.queue)
        if queue_limits is None:
            continue
        running = running_queues.get(job.queue, 0)
        if queue_limits.concurrency is not None and running >= queue_limits.concurrency:
            details = {
                "queue": job.queue,
                "concurrency": queue_limits.concurrency,
                "running": running,
            }
            return Hold("waiting_for_queue_limit", job.step, details)
        if queue_limits.rate is not None and queue_limits.tokens_at(now) < 1:
            details = {
                "queue": job.queue,
                "rate_limit": queue_limits.rate.describe(),
                "next_slot_at": queue_limits.next_token_at(now).isoformat(),
            }
            return Hold("rate_limited", job.step, details)
    return None


def find_dead_letter(connection: Connection, run_id: str) -> Hold | None:
    """The run's oldest job kept ``failed`` (a dead letter), if any.

    Nothing delivers it again until an operator retries it (``squidmesh jobs retry JOB_ID``):
    its step stays as the last delivery left it, ``running`` or not started, and a run that is
    cancelled meanwhile stays ``cancelling``, since the step's next delivery is what closes it.
    """
    failed = job_store.list_jobs(connection, run_id=run_id, status="failed")
    if not failed:
        return None
    job = failed[0]
    details = {
        "job_id": job.id,
        "job_kind": job.kind,
        "queue": job.queue,
        "deliveries": job.deliveries,
        "last_error": job.last_error,
        "failed_jobs": len(failed),
    }
    return Hold("job_dead_lettered", job.step, details)
