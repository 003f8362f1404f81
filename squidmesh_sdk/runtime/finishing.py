"""What a run's status change brings with it, in the transaction that makes it.

:func:`before_commit` is the runtime's before-commit hook (:attr:`Runtime.before_commit`): it
reads the transaction's :class:`~squidmesh_sdk.runtime.events.RunTransitioned` events, so
whatever path moved a run (a step's outcome, a cancel, a deadline, a failed dispatch, a
grouped commit) gets the same follow-up, committed with it or not at all:

* **No step run is left open by a finished run.** A run that fails or is cancelled closes the
  step runs it had scheduled and will now never dispatch (the map elements not yet started, a
  parallel branch still queued): ``cancelled`` when the run was cancelled, ``skipped`` when it
  failed, each with a ``last_error`` saying so (code ``run_cancelled`` / ``run_failed``) and
  one ``steps_closed`` audit event listing them. ``retry_run`` puts the ones a failure closed
  back to ``pending`` and goes on with them. Step runs still ``running`` are not touched: a body
  in flight closes its own when it ends (its run already finished, nothing follows), and a step
  waiting in a failed run (a timer, a signal, a child) stays open for ``retry_run`` to resume; a
  cancellation fails its waits itself (:func:`squidmesh_sdk.store.runs.cancel_run`).
* **Parents and children** (:func:`squidmesh_sdk.runtime.children.run_transitioned`): a child
  that finished wakes its parent; a parent that finished first closes its children.

A completed run costs nothing here: it completes only once nothing of it is pending, running
or waiting.
"""

from __future__ import annotations

from squidmesh_sdk import error_records
from squidmesh_sdk.runtime import children
from squidmesh_sdk.runtime.core import Runtime
from squidmesh_sdk.runtime.events import RunTransitioned
from squidmesh_sdk.store import audit
from squidmesh_sdk.store import step_runs as step_run_store
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["CLOSED_BY_CANCEL", "CLOSED_BY_FAILURE", "before_commit", "close_open_steps"]

CLOSED_BY_CANCEL = error_records.error_record(
    "cancelled", "not run: the run was cancelled before this step started", code="run_cancelled"
)
"""The ``last_error`` of a step run a cancelled run closed (``cancelled``) before it started."""

CLOSED_BY_FAILURE = error_records.error_record(
    "skipped", "not run: the run failed before this step started", code="run_failed"
)
"""The ``last_error`` of a step run a failed run closed (``skipped``) before it started;
``retry_run`` reopens the step runs that carry it."""


def before_commit(runtime: Runtime, tx: Transaction) -> None:
    """Add to ``tx`` what its runs' status changes imply; see the module docstring.

    Events appended meanwhile (a child cancelled by its parent) are handled too, so the
    cascade goes down the tree.
    """
    seen = 0
    while seen < len(tx.events):
        event = tx.events[seen]
        seen += 1
        if not isinstance(event, RunTransitioned) or event.from_status == event.to_status:
            continue
        if event.to_status in ("failed", "cancelled"):
            close_open_steps(tx, event.run, event.to_status)
        children.run_transitioned(runtime, tx, event)


def close_open_steps(tx: Transaction, run: Run, status: str) -> list[str]:
    """Close the ``pending`` step runs of ``run``, which just became ``status``.

    Returns:
        The keys of the step runs closed (an audit event lists them when there are any).
    """
    cancelled = status == "cancelled"
    closed = step_run_store.close_pending(
        tx,
        run.id,
        "cancelled" if cancelled else "skipped",
        CLOSED_BY_CANCEL if cancelled else CLOSED_BY_FAILURE,
    )
    if closed:
        audit.record_event(
            tx,
            run.id,
            "steps_closed",
            metadata={
                "steps": closed,
                "status": "cancelled" if cancelled else "skipped",
                "run_status": status,
            },
        )
    return closed
