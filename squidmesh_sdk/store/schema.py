"""The squidmesh tables, declared once with SQLAlchemy Core.

Every table is prefixed ``squidmesh_`` so it can live beside the host's own tables. Migrations
(:mod:`squidmesh_sdk.store.migrations`) create exactly this metadata; a test compares them.
"""

from __future__ import annotations

from typing import Literal, get_args

import sqlalchemy as sa

from squidmesh_sdk.store.types import JSONColumn, UTCDateTime

__all__ = [
    "JobStatus",
    "attempts",
    "cron_schedules",
    "job_status_is",
    "jobs",
    "maintenance",
    "metadata",
    "migrations",
    "outbox",
    "queue_limits",
    "run_events",
    "runs",
    "signals",
    "step_runs",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

NAME = sa.String(200)
STATUS = sa.String(16)

migrations = sa.Table(
    "squidmesh_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

runs = sa.Table(
    "squidmesh_runs",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("workflow", NAME, nullable=False),
    sa.Column("trigger", NAME, nullable=False),
    sa.Column("status", STATUS, nullable=False),
    sa.Column("payload", JSONColumn(), nullable=False),
    sa.Column("context", JSONColumn(), nullable=False),
    sa.Column("current_step", NAME, nullable=True),
    sa.Column("last_error", JSONColumn(), nullable=True),
    sa.Column(
        "replayed_from_run_id",
        sa.Uuid,
        sa.ForeignKey("squidmesh_runs.id", ondelete="SET NULL"),
        nullable=True,
    ),
    # The graph the run was started with; lets operators see a run that predates a deploy.
    sa.Column("definition_fingerprint", sa.String(80), nullable=False),
    # The definition version the run is pinned to (migration 5; NULL: started before it, and
    # run on whatever version of its workflow a worker holds, as before).
    sa.Column("definition_version", sa.String(80), nullable=True),
    # Schedule identity of cron-started runs: one run per (workflow, trigger, key).
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    # The idempotency key of a start (Client.start_run(..., idempotency_key=)) and the
    # fingerprint of that request (trigger and payload as given), migration 7: one run per
    # (workflow, start_key), whatever the trigger; kept apart from cron's schedule identity.
    sa.Column("start_key", sa.String(200), nullable=True),
    sa.Column("start_request", sa.String(80), nullable=True),
    # A child run (started by a ``child`` step, migration 8): the run and step run key that
    # started it. The parent's children are the runs that name it. No foreign key: SQLite can
    # only add one inline, without its ON DELETE rule, so the link is an indexed id (a purged
    # parent leaves its children naming a run that is gone).
    sa.Column("parent_run_id", sa.Uuid, nullable=True),
    sa.Column("parent_step", NAME, nullable=True),
    # How many times an operator resumed the failed run from a failed step (retry_run,
    # migration 8; NULL: never): its later steps then get new step-run keys where needed.
    sa.Column("operator_retries", sa.Integer, nullable=True),
    # Flow control (migration 9): the priority every job of the run is queued with (higher
    # first), from the workflow or the start call.
    sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("0")),
    # W3C trace context of the run, so spans from every process join one trace.
    sa.Column("trace_context", JSONColumn(), nullable=True),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(None, "workflow", "inserted_at"),
    sa.Index(None, "status", "inserted_at"),
    sa.Index(None, "inserted_at"),
    sa.Index(None, "replayed_from_run_id"),
    # No index covers a column every step changes (updated_at, context, current_step,
    # last_error; migration 10 dropped one on status, updated_at, id): a step's update of its
    # run then touches no index, and PostgreSQL makes it in place (a heap-only tuple). The
    # purge walks finished runs through (status, inserted_at).
    sa.UniqueConstraint("workflow", "trigger", "idempotency_key"),
    # A unique index rather than a constraint: SQLite cannot add a constraint to a table.
    sa.Index(None, "workflow", "start_key", unique=True),
    sa.Index(None, "parent_run_id"),
)

step_runs = sa.Table(
    "squidmesh_step_runs",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "run_id",
        sa.Uuid,
        sa.ForeignKey("squidmesh_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("step", NAME, nullable=False),
    sa.Column("status", STATUS, nullable=False),
    sa.Column("input", JSONColumn(), nullable=False),
    sa.Column("output", JSONColumn(), nullable=True),
    sa.Column("last_error", JSONColumn(), nullable=True),
    sa.Column("recovery", JSONColumn(), nullable=True),
    sa.Column("resume", JSONColumn(), nullable=True),
    sa.Column("manual", JSONColumn(), nullable=True),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # The step run's latest attempt (migration 11): begun, finished and read with the step
    # run's own row, so that a step tried once writes no attempt row at all. Its earlier
    # attempts are rows of squidmesh_step_attempts, moved there when the next one begins.
    # attempt_number counts the attempts begun (0: none yet); the other columns are NULL
    # until the first one.
    sa.Column("attempt_id", sa.Uuid, nullable=True),
    sa.Column("attempt_number", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempt_status", STATUS, nullable=True),
    sa.Column("attempt_error", JSONColumn(), nullable=True),
    sa.Column("attempt_started_at", UTCDateTime, nullable=True),
    sa.Column("attempt_updated_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("run_id", "step"),
)

# A step run's attempts before its latest (which its own row holds), oldest first.
attempts = sa.Table(
    "squidmesh_step_attempts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "step_run_id",
        sa.Uuid,
        sa.ForeignKey("squidmesh_step_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt_number", sa.Integer, nullable=False),
    sa.Column("status", STATUS, nullable=False),
    sa.Column("error", JSONColumn(), nullable=True),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("step_run_id", "attempt_number"),
    # Finished attempts only (migration 11): a running attempt is its step run's latest, held
    # in the step run's row. A process of an older release inserting one here fails.
    sa.CheckConstraint("status <> 'running'", name="finished"),
)

run_events = sa.Table(
    "squidmesh_run_events",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "run_id",
        sa.Uuid,
        sa.ForeignKey("squidmesh_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("step", NAME, nullable=True),
    sa.Column("actor", JSONColumn(), nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("metadata", JSONColumn(), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index(None, "run_id", "at"),
)

# Signals sent to runs (migration 8): ``pending`` until a signal step of the run consumes it,
# oldest first, then ``consumed`` with the step run key that did. One signal per run and
# idempotency key (NULL keys never collide).
signals = sa.Table(
    "squidmesh_signals",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "run_id",
        sa.Uuid,
        sa.ForeignKey("squidmesh_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", NAME, nullable=False),
    sa.Column("payload", JSONColumn(), nullable=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
    sa.Column("status", STATUS, nullable=False),
    sa.Column("step", NAME, nullable=True),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.Column("consumed_at", UTCDateTime, nullable=True),
    sa.Index(None, "run_id", "name", "status"),
    sa.Index(None, "run_id", "idempotency_key", unique=True),
)

# The built-in database queue (``DatabaseExecutor`` + ``Worker``). A job row is written in the
# same transaction as the state change that implies it and deleted in the transaction that
# records its outcome, so the queue holds exactly the work still to do.
jobs = sa.Table(
    "squidmesh_jobs",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("payload", JSONColumn(), nullable=False),
    sa.Column(
        "run_id",
        sa.Uuid,
        sa.ForeignKey("squidmesh_runs.id", ondelete="CASCADE"),
        nullable=True,
    ),
    sa.Column("step", NAME, nullable=True),
    # What a worker must hold to take the job (migration 5): a step or compensation job needs
    # this workflow at this version, a cron job the workflow at any version. NULL (jobs queued
    # before migration 5): any worker of the queue takes it.
    sa.Column("workflow", NAME, nullable=True),
    sa.Column("definition_version", sa.String(80), nullable=True),
    # queued: waiting for run_at; running: leased by a worker; failed: gave up (dead letter).
    sa.Column("status", STATUS, nullable=False),
    sa.Column("run_at", UTCDateTime, nullable=False),
    sa.Column("deliveries", sa.Integer, nullable=False),
    # How many times a lease expired under this job: the next delivery takes over its step.
    sa.Column("rescues", sa.Integer, nullable=False),
    sa.Column("locked_by", sa.String(200), nullable=True),
    sa.Column("locked_until", UTCDateTime, nullable=True),
    sa.Column("last_error", JSONColumn(), nullable=True),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Flow control (migration 9): claims take higher priorities first; a job with a
    # concurrency key is claimed only while fewer than ``concurrency_limit`` running jobs share
    # the key (scope, path and value, as text).
    sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("concurrency_key", sa.String(500), nullable=True),
    sa.Column("concurrency_limit", sa.Integer, nullable=True),
    sa.Index(
        "ix_squidmesh_jobs_leases",
        "locked_until",
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    ),
    sa.Index(None, "run_id"),
    # The limited claim counts the running jobs of a key; unkeyed jobs (the common case) are
    # left out of the index, so it costs them nothing.
    sa.Index(
        "ix_squidmesh_jobs_running_keys",
        "concurrency_key",
        sqlite_where=sa.text("status = 'running' AND concurrency_key IS NOT NULL"),
        postgresql_where=sa.text("status = 'running' AND concurrency_key IS NOT NULL"),
    ),
)
# The claim's scan (migration 9 added ``priority``): due jobs of a queue in claim order,
# priority DESC, run_at, id, so that a claim of N jobs reads N index entries.
sa.Index(
    "ix_squidmesh_jobs_claim",
    jobs.c.queue,
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.id,
    sqlite_where=sa.text("status = 'queued'"),
    postgresql_where=sa.text("status = 'queued'"),
)

JobStatus = Literal["queued", "running", "failed"]
"""A job's status (a finished job is deleted)."""

_JOB_STATUS_TEXT = {
    status: sa.literal_column(f"'{status}'", STATUS) for status in get_args(JobStatus)
}


def job_status_is(status: JobStatus) -> sa.ColumnElement[bool]:
    """``squidmesh_jobs.status = '<status>'``, the status written in the statement's text.

    For statements that search the jobs (claims, lease expiry, counts, a set of ids), not
    those with ``id = ?``, which SQLite and PostgreSQL answer from the primary key without
    looking at other indexes. The planner may use a partial index of the jobs (the claim's,
    the leases', the running keys') only where it can prove the index's ``WHERE`` from the
    statement's; with ``status = ?`` that depends on the value bound, so SQLite compiled the
    claim again at every execution (0.6 million instructions), and PostgreSQL can use the
    index only in a plan made for the value, not in a generic plan it could keep. The
    statements with ``id = ?`` keep a parameter: PostgreSQL's fusion of statements refuses
    any with a literal (:mod:`~squidmesh_sdk.store.fusion`).

    Raises:
        ValueError: ``status`` is not a job's status.
    """
    try:
        return jobs.c.status == _JOB_STATUS_TEXT[status]
    except KeyError:
        raise ValueError(f"not a job status: {status!r}") from None


# Operators' limits on a queue of the database queue (migration 9), enforced by the claim: at
# most ``concurrency`` running jobs, at most ``rate_count`` claims per ``rate_period`` seconds
# (a token bucket: ``tokens`` left at ``refilled_at``, written by the claims that spend them).
queue_limits = sa.Table(
    "squidmesh_queue_limits",
    metadata,
    sa.Column("queue", sa.String(100), primary_key=True),
    sa.Column("concurrency", sa.Integer, nullable=True),
    sa.Column("rate_count", sa.Integer, nullable=True),
    sa.Column("rate_period", sa.Float, nullable=True),
    sa.Column("tokens", sa.Float, nullable=True),
    sa.Column("refilled_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Where each cron trigger's scheduling has got to. Workers advance ``last_start`` with a
# compare-and-set in the transaction that queues the activation, so however many workers look
# at a window, exactly one of them starts it.
cron_schedules = sa.Table(
    "squidmesh_cron_schedules",
    metadata,
    sa.Column("workflow", NAME, primary_key=True),
    sa.Column("trigger", NAME, primary_key=True),
    sa.Column("last_start", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Messages for an executor whose broker cannot join our transaction (Celery): written with the
# state change that implies them, published by a relay once committed and due, and deleted in
# the transaction that follows their publication. A relay that dies after publishing leaves the
# row, which is published again: a duplicate delivery, which the runtime ignores.
outbox = sa.Table(
    "squidmesh_outbox",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("destination", NAME, nullable=False),
    sa.Column("payload", JSONColumn(), nullable=False),
    sa.Column(
        "run_id",
        sa.Uuid,
        sa.ForeignKey("squidmesh_runs.id", ondelete="CASCADE"),
        nullable=True,
    ),
    # Not before this time: long delays are kept here, not as broker ETAs.
    sa.Column("publish_at", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("inserted_at", UTCDateTime, nullable=False),
    sa.Index("ix_squidmesh_outbox_due", "publish_at", "id"),
    sa.Index(None, "run_id"),
)

# Periodic housekeeping shared by workers (migration 6): one row per task, whose
# ``last_run_at`` a worker advances with a compare-and-set to take its turn, so however many
# workers run, one at a time does the task, at most once per interval.
maintenance = sa.Table(
    "squidmesh_maintenance",
    metadata,
    sa.Column("task", sa.String(100), primary_key=True),
    sa.Column("last_run_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
