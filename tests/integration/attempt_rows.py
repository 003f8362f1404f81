"""Every attempt as a row, for tests that count attempts in the tables themselves.

A step run's latest attempt is held in its own row and its earlier ones in
``squidmesh_step_attempts`` (see :mod:`squidmesh_sdk.store.attempts`): this is both, as one
query.
"""

from __future__ import annotations

import sqlalchemy as sa

from squidmesh_sdk.store import schema


def every_attempt() -> sa.Subquery:
    """``(run_id, step_run_id, number, status, started_at)`` of every attempt of every run."""
    steps, earlier = schema.step_runs, schema.attempts
    latest = sa.select(
        steps.c.run_id,
        steps.c.id.label("step_run_id"),
        steps.c.attempt_number.label("number"),
        steps.c.attempt_status.label("status"),
        steps.c.attempt_started_at.label("started_at"),
    ).where(steps.c.attempt_id.is_not(None))
    archived = sa.select(
        steps.c.run_id,
        earlier.c.step_run_id,
        earlier.c.attempt_number.label("number"),
        earlier.c.status,
        earlier.c.inserted_at.label("started_at"),
    ).join_from(earlier, steps, earlier.c.step_run_id == steps.c.id)
    return sa.union_all(latest, archived).subquery("every_attempt")
