"""The Jobs page: the database queue's depth, its jobs, and the dead letters' repair.

Like ``squidmesh jobs``, this is an operator's database tool over
:mod:`squidmesh_sdk.store.jobs` (the ``Client`` has no job API: jobs belong to the
``DatabaseExecutor``); with any other executor the page says there is nothing to show.
A dead letter (a ``failed`` job) can be retried (queued again, due now, with a fresh budget
of deliveries) or discarded; discarding one whose run still waits for it needs the explicit
"discard anyway" box, as ``squidmesh jobs discard --force`` does.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.responses import Response

from squidmesh_sdk import errors
from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.state_machine import TERMINAL
from squidmesh_sdk.store import job_admin
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.job_admin import JOB_STATES
from squidmesh_sdk.store.jobs import Job
from squidmesh_sdk.store.records import Run
from squidmesh_sdk.ui import present
from squidmesh_sdk.ui.context import Page

__all__ = ["job_action", "jobs"]

logger = logging.getLogger(__name__)


async def jobs(page: Page) -> Response:
    """``GET /jobs``: per-queue counts, then the jobs (filtered by state), oldest first."""
    return await render_jobs(page)


async def job_action(page: Page) -> Response:
    """``POST /jobs/{job_id}/{action}``: ``retry`` or ``discard`` a dead letter."""
    if not isinstance(page.client.executor, DatabaseExecutor):
        return await render_jobs(page, status=404)
    job_id: int = page.request.path_params["job_id"]
    action = page.request.path_params["action"]
    if action not in ("retry", "discard"):
        return await render_jobs(page, error=f"Unknown job action {action!r}.", status=404)
    force = page.form.get("force") == "on"
    message, status = await page.call(_act, page, job_id, action, force)
    if status != 200:
        return await render_jobs(page, error=message, status=status)
    logger.info(
        "inspector action",
        extra={
            "action": f"job_{action}",
            "job_id": job_id,
            "actor": present.actor_text(page.actor),
        },
    )
    state = page.form.get("state", "")
    return page.redirect(
        "/jobs", state=state if state in JOB_STATES else "", done=action, job=str(job_id)
    )


def _act(page: Page, job_id: int, action: str, force: bool) -> tuple[str, int]:
    client = page.client
    with client.database.read() as connection:
        job = job_store.get_job(connection, job_id)
    if job is None:
        return f"Job {job_id} no longer exists (a job is deleted once its work is done).", 404
    if job.status != "failed":
        state = job_admin.job_state(job, client.clock.now())
        return f"Job {job_id} is {state}: only a failed job (a dead letter) can be {action}ed.", 409
    if action == "retry":
        with client.runtime.transaction() as tx:
            retried = job_admin.requeue_failed(tx, job_id)
        if retried is None:
            return f"Job {job_id} is no longer failed: someone else got there first.", 409
        return "", 200
    run = _run_of(page, job)
    if _waits_for(job, run) and not force:
        assert run is not None  # noqa: S101 - only a job with a run strands one
        return (
            f"Job {job_id} is what run {run.id} ({run.status}) waits for: discarding it leaves "
            "the run stuck. Retry it instead, or tick 'discard anyway'.",
            409,
        )
    with client.runtime.transaction() as tx:
        deleted = job_admin.delete_failed(tx, job_id)
    if not deleted:
        return f"Job {job_id} is no longer failed: someone else got there first.", 409
    return "", 200


def _run_of(page: Page, job: Job) -> Run | None:
    if job.run_id is None:
        return None
    try:
        return page.client.inspect_run(job.run_id)
    except errors.RunNotFound:
        return None


def _waits_for(job: Job, run: Run | None) -> bool:
    """Whether deleting ``job`` leaves its run waiting for work nobody will deliver."""
    if run is None:
        return False
    return job.kind == "compensation" or run.status not in TERMINAL


async def render_jobs(page: Page, *, error: str | None = None, status: int = 200) -> Response:
    """The Jobs page (with an error above it)."""
    if not isinstance(page.client.executor, DatabaseExecutor):
        return page.render(
            "jobs.html",
            status=status,
            available=False,
            executor=type(page.client.executor).__name__,
            error=error,
        )
    params = page.request.query_params
    state = params.get("state", "")
    after_text = params.get("after", "")
    # ASCII digits only: str.isdigit() takes "²", which int() refuses.
    after = int(after_text) if re.fullmatch(r"[0-9]{1,18}", after_text) else None
    values = await page.call(_load, page, state if state in JOB_STATES else "", after)
    return page.render(
        "jobs.html",
        status=status,
        available=True,
        state=state if state in JOB_STATES else "",
        states=JOB_STATES,
        error=error,
        notice=_notice(params.get("done", ""), params.get("job", "")),
        **values,
    )


def _notice(done: str, job: str) -> str | None:
    """What the page says after an action (built here: nothing from the URL is shown)."""
    if not job.isdigit():
        return None
    if done == "retry":
        return f"Job {job} queued again, due now, with a fresh budget of deliveries."
    if done == "discard":
        return f"Job {job} discarded."
    return None


def _load(page: Page, state: str, after: int | None) -> dict[str, Any]:
    now = page.now()
    limit = page.settings.page_size
    with page.client.database.read() as connection:
        stats = job_admin.queue_stats(connection, now)
        found = job_admin.find_jobs(
            connection, now=now, states=[state] if state else None, limit=limit + 1, after=after
        )
    more = len(found) > limit
    found = found[:limit]
    return {
        "stats": stats,
        "jobs": [
            {"job": job, "state": job_admin.job_state(job, now), "payload": job.payload}
            for job in found
        ],
        "next_after": found[-1].id if more and found else None,
    }
