"""Purging finished runs older than a cutoff (``Client.purge_runs``, ``squidmesh runs purge``).

The store lists and deletes (:mod:`squidmesh_sdk.store.retention`); this layer adds what only
the definitions know: a ``failed`` run whose saga rollback has not finished is kept, and so is
a failed run of a version the runtime does not hold (it cannot tell whether its completed
steps have compensations), unless it completed no step.

Cron runs: the built-in scheduler never starts a window twice whatever is deleted, because
``squidmesh_cron_schedules`` only moves forward (a compare-and-set) and only windows after it
are queued. What a deleted run gives up is its idempotency key, which also guards activations
from a host's own scheduler; a run holding one is therefore kept at least
:data:`CRON_KEY_RETENTION` after it finished, whatever ``older_than`` says, so a late
redelivery of an activation still finds it. So is a run started with an idempotency key
(``start_run(..., idempotency_key=)``): a retry of that start within the week still gets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from squidmesh_sdk import arguments, errors
from squidmesh_sdk.runtime.compensation import pending_compensations
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.store import retention, run_reads, step_run_reads
from squidmesh_sdk.store.records import RunStatus
from squidmesh_sdk.store.retention import FINISHED, TABLES, Candidate, Criteria

__all__ = [
    "CRON_KEY_RETENTION",
    "DEFAULT_BATCH_SIZE",
    "FINISHED",
    "SAMPLE_SIZE",
    "PurgeResult",
    "purge_runs",
]

logger = logging.getLogger("squidmesh_sdk.retention")

CRON_KEY_RETENTION = timedelta(days=7)
"""Runs holding an idempotency key (cron's, or a start's) are kept at least this long after they
finished."""

DEFAULT_BATCH_SIZE = 500
"""Runs deleted per transaction by default."""

SAMPLE_SIZE = 1000
"""The most run ids a dry run lists."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeResult:
    """What a purge deleted, or, for a dry run, would delete.

    Attributes:
        dry_run: Nothing was deleted; the counts say what would be.
        cutoff: Runs last changed before this time were purged.
        statuses: The statuses purged.
        workflow: The workflow purged, or ``None`` for all.
        runs: Runs deleted (or that would be).
        rows: Rows deleted (or that would be) per table, runs included; every table of the
            purge is a key.
        run_ids: For a dry run, the ids of the runs that would be deleted, oldest first per
            status, at most :data:`SAMPLE_SIZE` (``runs`` has the full count); empty for a
            real purge.
        kept_compensating: Finished runs past the cutoff that were kept because their saga
            rollback has not finished (or cannot be checked: their version is not held).
        batches: Transactions used (for a dry run, batches read).
    """

    dry_run: bool
    cutoff: datetime
    statuses: tuple[RunStatus, ...]
    workflow: str | None
    runs: int = 0
    rows: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    run_ids: tuple[str, ...] = ()
    kept_compensating: int = 0
    batches: int = 0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping (times as ISO-8601)."""
        return {
            "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat(),
            "statuses": list(self.statuses),
            "workflow": self.workflow,
            "runs": self.runs,
            "rows": dict(self.rows),
            "run_ids": list(self.run_ids),
            "kept_compensating": self.kept_compensating,
            "batches": self.batches,
        }


def purge_runs(
    runtime: Runtime,
    *,
    older_than: timedelta,
    statuses: Iterable[str] | None = None,
    workflow: str | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    keep_going: Callable[[], bool] | None = None,
) -> PurgeResult:
    """Delete finished runs last changed more than ``older_than`` ago, with all their rows.

    Args:
        runtime: The runtime whose database is purged.
        older_than: How long after its last change a finished run is kept.
        statuses: Which finished statuses to purge (default: all three).
        workflow: Only runs of this workflow (registered or not: an old deploy's runs too).
        dry_run: Count and list, delete nothing.
        batch_size: Runs per transaction.
        keep_going: Asked before each batch; ``False`` ends the purge early (a stopping worker).

    Raises:
        InvalidArgument: ``older_than`` is not positive, ``batch_size`` below 1, or a status that
            is not ``completed``, ``failed`` or ``cancelled``.
        SchemaNotReady: the database is not at this library's schema version.
    """
    arguments.age("older_than", older_than)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise errors.InvalidArgument(
            "batch_size", f"batch_size must be an integer >= 1, got {batch_size!r}"
        )
    if not isinstance(dry_run, bool):
        raise errors.InvalidArgument("dry_run", f"dry_run must be True or False, got {dry_run!r}")
    wanted = _statuses(statuses)
    runtime.check_schema()
    now = runtime.clock.now()
    cutoff = now - older_than
    criteria = Criteria(
        cutoff=cutoff, key_cutoff=min(cutoff, now - CRON_KEY_RETENTION), workflow=workflow
    )
    total = dict.fromkeys(TABLES, 0)
    sample: list[str] = []
    deleted = kept = batches = 0
    for status in wanted:
        after: Candidate | None = None
        while keep_going is None or keep_going():
            with runtime.database.read() as connection:
                batch = retention.candidates(
                    connection, criteria, status, after=after, limit=batch_size
                )
                if not batch:
                    break
                after = batch[-1]
                ids = [c.id for c in batch if not _compensating(runtime, connection, c)]
                kept += len(batch) - len(ids)
                preview = retention.count_rows(connection, ids) if dry_run else None
            if preview is not None:
                done, counts = ids, preview
                sample.extend(ids[: SAMPLE_SIZE - len(sample)])
            else:
                with runtime.transaction() as tx:
                    done, counts = retention.delete_runs(tx, ids, criteria, (status,))
            batches += 1
            deleted += len(done)
            for table, count in counts.items():
                total[table] += count
            logger.debug(
                "purge batch",
                extra={"status": status, "runs": len(done), "dry_run": dry_run},
            )
    result = PurgeResult(
        dry_run=dry_run,
        cutoff=cutoff,
        statuses=wanted,
        workflow=workflow,
        runs=deleted,
        rows=total,
        run_ids=tuple(sample),
        kept_compensating=kept,
        batches=batches,
    )
    if deleted or kept:
        logger.debug(
            "dry run: finished runs that a purge would delete" if dry_run else "purged runs",
            extra={
                "runs": deleted,
                "rows": sum(total.values()),
                "cutoff": cutoff.isoformat(),
                "kept_compensating": kept,
            },
        )
    return result


def _statuses(statuses: Iterable[str] | None) -> tuple[RunStatus, ...]:
    if statuses is None:
        return FINISHED
    if isinstance(statuses, str):
        statuses = (statuses,)
    listed = tuple(statuses) if isinstance(statuses, Iterable) else None
    if listed is None or not all(isinstance(status, str) for status in listed):
        raise errors.InvalidArgument(
            "statuses", f"statuses must be a list of run statuses, got {statuses!r}"
        )
    given = list(dict.fromkeys(listed))
    refused = [status for status in given if status not in FINISHED]
    if refused or not given:
        raise errors.InvalidArgument(
            "statuses",
            "only finished runs are purged (completed, failed, cancelled), not "
            + (", ".join(repr(status) for status in refused) or "an empty list of statuses"),
        )
    return tuple(status for status in FINISHED if status in given)


def _compensating(runtime: Runtime, connection: Connection, candidate: Candidate) -> bool:
    """Whether a failed run's rollback is still to run (or cannot be checked)."""
    if candidate.status != "failed":
        return False
    completed = step_run_reads.completed_step_runs_for_compensation(connection, candidate.id)
    if not completed:
        return False
    run = run_reads.get_run(connection, candidate.id)
    try:
        definition = runtime.definition_of(run)
    except (errors.InvalidWorkflow, errors.DefinitionUnavailable):
        return True
    return bool(pending_compensations(definition, completed))
