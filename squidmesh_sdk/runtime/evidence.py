"""The records ``explain_run`` rests its diagnosis on, as JSON-safe dicts.

An explanation carries them as ``evidence``, and a finished run's as details of how it
closed: what it never started, the children it cancelled or left, who cancelled it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squidmesh_sdk.graph import StepKey
from squidmesh_sdk.store.records import Attempt, Run, StepRun

__all__ = [
    "attempt_evidence",
    "cancellation_evidence",
    "closed_details",
    "run_evidence",
    "step_run_evidence",
]


def run_evidence(run: Run) -> dict[str, Any]:
    """The run's own fields an explanation rests on."""
    evidence: dict[str, Any] = {
        "id": run.id,
        "status": run.status,
        "workflow": run.workflow,
        "current_step": run.current_step,
        "last_error": run.last_error,
        "inserted_at": run.inserted_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
    }
    if run.idempotency_key is not None:
        evidence["idempotency_key"] = run.idempotency_key
    if run.schedule is not None:
        evidence["schedule"] = dict(run.schedule)
    return evidence


_CLOSED_CODES = frozenset({"run_cancelled", "run_failed"})
"""``last_error`` codes of step runs a run closed when it finished before they started."""


def closed_details(run: Run, cancellation: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the run's end closed: steps it never started, children it cancelled or left.

    And, for a child its parent's end cancelled, that parent.
    """
    details: dict[str, Any] = {}
    closed = [
        sr.step
        for sr in run.step_runs or ()
        if sr.status in ("cancelled", "skipped")
        and (sr.last_error or {}).get("code") in _CLOSED_CODES
    ]
    if closed:
        details["closed_steps"] = sorted(closed, key=_step_order)
    # By child: a run retried and failed again records an abandoned child once per failure.
    children: dict[Any, dict[str, Any]] = {}
    for event in run.events or ():
        if event.type in ("child_cancelled", "child_abandoned"):
            child_id = (event.metadata or {}).get("child_run_id")
            children[child_id] = {
                "child_run_id": child_id,
                "workflow": (event.metadata or {}).get("workflow"),
                "step": event.step,
                "closed": "cancelled" if event.type == "child_cancelled" else "abandoned",
            }
    if children:
        details["closed_children"] = list(children.values())
    actor = (cancellation or {}).get("actor")
    if isinstance(actor, Mapping) and isinstance(actor.get("parent_run_id"), str):
        details["cancelled_by_parent"] = actor["parent_run_id"]
    return details


def _step_order(key: str) -> tuple[str, int, int]:
    parsed = StepKey.parse(key)
    return (parsed.name, parsed.iteration, -1 if parsed.item is None else parsed.item)


def cancellation_evidence(run: Run) -> dict[str, Any] | None:
    """Who asked for the run's cancellation and why: its latest ``cancelled`` audit event."""
    cancelled = [event for event in run.events or () if event.type == "cancelled"]
    if not cancelled:
        return None
    event = cancelled[-1]
    actor = dict(event.actor) if isinstance(event.actor, Mapping) else event.actor
    return {
        "actor": actor,
        "reason": event.comment,
        "step": event.step,
        "at": event.at.isoformat(),
    }


def step_run_evidence(step_run: StepRun) -> dict[str, Any]:
    """A step run's fields an explanation rests on."""
    return {
        "id": step_run.id,
        "step": step_run.step,
        "status": step_run.status,
        "last_error": step_run.last_error,
        "recovery": step_run.recovery,
        "inserted_at": step_run.inserted_at.isoformat(),
        "updated_at": step_run.updated_at.isoformat(),
    }


def attempt_evidence(attempt: Attempt) -> dict[str, Any]:
    """An attempt's fields an explanation rests on."""
    return {
        "id": attempt.id,
        "number": attempt.number,
        "status": attempt.status,
        "error": attempt.error,
        "inserted_at": attempt.inserted_at.isoformat(),
        "updated_at": attempt.updated_at.isoformat(),
    }
