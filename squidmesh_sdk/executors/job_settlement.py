"""Settling a job its delivery did not: completed, retried with backoff, or kept as failed.

A delivery settles its job in the transaction that records its outcome. When it could not
(its ``perform`` raised, or it ended without settling), the worker settles the job in a
transaction of its own: a delivery that raised is retried after ``2 ** deliveries`` seconds
(at most 5 minutes) until ``max_deliveries``, then the job is kept as ``failed`` (a dead
letter) for an operator. If the database is away even for that, the lease expires and a
rescue queues the job again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.failures import describe_error
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.store.jobs import Job

__all__ = ["LONGEST_RETRY_DELAY", "finish_job", "settle_failed_delivery"]

logger = logging.getLogger("squidmesh_sdk.worker")

LONGEST_RETRY_DELAY = 300.0
"""Seconds a failed delivery's job waits at most before its next delivery."""


def settle_failed_delivery(
    runtime: Runtime, worker: str, job: Job, exc: Exception, *, max_deliveries: int
) -> None:
    """Retry ``job`` later, or keep it as failed once ``max_deliveries`` raised."""
    error = describe_error(exc)
    extra = {
        "worker": worker,
        "job_id": job.id,
        "kind": job.kind,
        "run_id": job.run_id,
        "step": job.step,
        "delivery": job.deliveries,
        "error_type": type(exc).__name__,
        "error_message": str(exc),
    }
    # The traceback is for debugging; the cause (type and message) is always logged.
    exc_info = exc if logger.isEnabledFor(logging.DEBUG) else None
    if job.deliveries >= max_deliveries:
        logger.error("job failed for good; kept as failed", extra=extra, exc_info=exc_info)
        finish_job(runtime, lambda tx: job_store.fail(tx, job.id, worker=worker, error=error))
        return
    delay = min(2.0**job.deliveries, LONGEST_RETRY_DELAY)
    logger.warning(
        "job delivery raised; retrying later", extra={**extra, "retry_in": delay}, exc_info=exc_info
    )
    finish_job(
        runtime,
        lambda tx: job_store.release(tx, job.id, worker=worker, delay=delay, error=error),
    )


def finish_job(runtime: Runtime, write: Callable[[Any], object]) -> None:
    """Settle a job with ``write(tx)``; if the database is away, its lease will expire."""
    try:
        with runtime.transaction() as tx:
            write(tx)
    except SQLAlchemyError:
        logger.warning("could not settle a job; its lease will expire", exc_info=True)
