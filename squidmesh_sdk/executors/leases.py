"""A worker's leases: renewing those of the jobs it performs, rescuing those that ran out.

A claimed job is leased to its worker (``locked_by`` / ``locked_until``). The worker's
heartbeat renews the leases of the jobs its threads perform every third of the lease; any
worker rescues jobs whose lease ran out (their worker died, or lost the database), queueing
them again for a delivery that takes over the step they were running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.store import jobs as job_store

__all__ = ["keep_leases", "rescue_expired"]

logger = logging.getLogger("squidmesh_sdk.worker")


def keep_leases(
    runtime: Runtime,
    worker: str,
    lease: float,
    job_ids: Callable[[], list[int]],
    drained: threading.Event,
) -> None:
    """Renew the leases of ``job_ids()`` every third of ``lease`` until ``drained`` is set.

    A stopping worker still renews the leases of the jobs it is draining. A renewal that
    fails (the database is away, or anything else) is logged and tried again at the next
    beat: the jobs of a worker without a heartbeat would be rescued and run again.
    """
    interval = max(lease / 3, 0.01)
    while not drained.wait(interval):
        ids = job_ids()
        if not ids:
            continue
        try:
            with runtime.transaction() as tx:
                job_store.extend_leases(tx, worker=worker, job_ids=ids, lease=lease)
        except Exception:  # a heartbeat that ended would let every lease expire
            logger.warning("heartbeat failed", extra={"worker": worker}, exc_info=True)


def rescue_expired(runtime: Runtime, worker: str) -> bool:
    """Queue again every job whose lease ran out; whether there was any."""
    with runtime.transaction() as tx:
        rescued = job_store.rescue_expired(tx)
    for job in rescued:
        logger.warning(
            "rescued a job whose lease expired",
            extra={"worker": worker, "job_id": job.id, "run_id": job.run_id},
        )
    return bool(rescued)
