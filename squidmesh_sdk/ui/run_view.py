"""What the Run page shows, computed from ``inspect_run`` (with history) and the definition.

Everything here reads step-run keys, statuses and edge kinds as opaque strings: a loop's
``charge@2`` and a map's ``charge[3]`` count towards the declared step ``charge``; a status
this module does not know is shown as it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from squidmesh_sdk.store.records import Attempt, Run, StepRun
from squidmesh_sdk.ui.graph_svg import COMPLETE, START, NodeState
from squidmesh_sdk.ui.present import step_base

__all__ = [
    "AttemptRow",
    "Compensation",
    "attempt_rows",
    "compensations",
    "grouped",
    "node_states",
    "taken_edges",
]

# Which status a group of step runs (a map's elements, a loop's iterations) is shown with:
# the first one present in this order; any other status outranks them all.
_GROUP_ORDER = ("running", "failed", "pending", "completed", "cancelled", "skipped")
# Step runs the run never started: a branch not taken, or closed when the run finished first.
_NOT_REACHED: frozenset[str] = frozenset({"skipped", "cancelled"})


def grouped(step_runs: Sequence[StepRun]) -> dict[str, list[StepRun]]:
    """Step runs by the declared step they belong to, oldest first within each."""
    groups: dict[str, list[StepRun]] = {}
    for step_run in sorted(step_runs, key=lambda sr: (sr.inserted_at, sr.step)):
        groups.setdefault(step_base(step_run.step), []).append(step_run)
    return groups


def node_states(run: Run, declared: Sequence[str]) -> dict[str, NodeState]:
    """Each declared step's state in ``run`` (and any recorded step no longer declared)."""
    groups = grouped(run.step_runs or ())
    current = step_base(run.current_step) if run.current_step else None
    states: dict[str, NodeState] = {}
    for name in [*declared, *(g for g in groups if g not in declared)]:
        members = groups.get(name, [])
        is_current = name == current and not run.terminal
        if not members:
            status = "not reached" if run.terminal else "waiting"
            states[name] = NodeState(status, None, is_current)
            continue
        if len(members) == 1 and members[0].step == name:
            member = members[0]
            status = member.status
            attempts = len(member.attempts or ())
            detail = f"{attempts} attempts" if attempts > 1 else None
        else:
            # A map step: its own step run says how it stands, its elements are counted. A
            # loop: every iteration is counted, and the liveliest one says how it stands.
            elements = [member for member in members if member.step.endswith("]")]
            counted = elements or members
            counts: Counter[str] = Counter(str(member.status) for member in counted)
            unknown = [s for s in counts if s not in _GROUP_ORDER]
            status = unknown[0] if unknown else next(s for s in _GROUP_ORDER if counts[s])
            own = next((member for member in members if member.step == name), None)
            if elements and own is not None:
                status = own.status
            parts = [f"{count} {state}" for state, count in sorted(counts.items())]
            detail = f"{', '.join(parts)} (of {len(counted)})"
        if is_current and run.status == "paused":
            status = "paused"
        states[name] = NodeState(status, detail, is_current)
    return states


def taken_edges(run: Run, definition: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """The edges the run went along: both ends reached, the target after the source began.

    A step is reached once it has a step run that is not ``skipped`` or ``cancelled`` (closed
    before it started). The edge to the
    completion marker is taken by a completed run from a reached step no other taken edge
    leaves.
    """
    first: dict[str, datetime] = {}
    for name, members in grouped(run.step_runs or ()).items():
        reached = [m.inserted_at for m in members if m.status not in _NOT_REACHED]
        if reached:
            first[name] = min(reached)
    taken: set[tuple[str, str]] = set()
    edges = [(str(e.get("source")), str(e.get("target"))) for e in definition.get("edges") or ()]
    for source, target in edges:
        if source in first and target in first and first[target] >= first[source]:
            taken.add((source, target))
    if run.status == "completed":
        leaving = {source for source, _ in taken}
        for source, target in edges:
            if target == COMPLETE and source in first and source not in leaving:
                taken.add((source, target))
    for entry in definition.get("entry_steps") or ():
        if str(entry) in first:
            taken.add((START, str(entry)))
    return frozenset(taken)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRow:
    """One attempt on the timeline.

    Attributes:
        step: The step-run key (``charge``, ``charge@2``, ``charge[3]``...).
        attempt: The attempt itself.
        started: When it started.
        ended: When it ended; ``None`` while it runs.
        took: How long it ran (so far, while it runs).
        waited: The time before it started: queueing for a first attempt, the retry delay
            for a later one.
        waited_for: ``"queue"`` or ``"retry delay"``.
    """

    step: str
    attempt: Attempt
    started: datetime
    ended: datetime | None
    took: timedelta
    waited: timedelta | None
    waited_for: str


def attempt_rows(run: Run, now: datetime) -> list[AttemptRow]:
    """Every attempt of the run, in the order they started."""
    rows: list[AttemptRow] = []
    for step_run in run.step_runs or ():
        previous: Attempt | None = None
        for attempt in sorted(step_run.attempts or (), key=lambda a: a.number):
            running = attempt.status == "running"
            ended = None if running else attempt.updated_at
            if previous is None:
                waited: timedelta | None = attempt.inserted_at - step_run.inserted_at
                waited_for = "queue"
            else:
                waited = attempt.inserted_at - previous.updated_at
                waited_for = "retry delay"
            rows.append(
                AttemptRow(
                    step=step_run.step,
                    attempt=attempt,
                    started=attempt.inserted_at,
                    ended=ended,
                    took=(now if ended is None else ended) - attempt.inserted_at,
                    waited=waited if waited is None or waited.total_seconds() >= 0 else None,
                    waited_for=waited_for,
                )
            )
            previous = attempt
    rows.sort(key=lambda row: (row.started, row.step, row.attempt.number))
    return rows


@dataclass(frozen=True, slots=True, kw_only=True)
class Compensation:
    """A saga compensation callback of one step, as recorded on its step run."""

    step: str
    callback: str
    status: str
    record: Mapping[str, Any]


def compensations(run: Run) -> list[Compensation]:
    """The compensation callbacks that ran or are due, in the order the steps completed."""
    found = []
    for step_run in sorted(run.step_runs or (), key=lambda sr: sr.updated_at):
        record = (step_run.recovery or {}).get("compensation")
        if not isinstance(record, Mapping):
            continue
        status = str(record.get("status", "unknown"))
        if status == "available" and run.status != "failed":
            continue  # declared, never needed
        found.append(
            Compensation(
                step=step_run.step,
                callback=str(record.get("callback", "-")),
                status=status,
                record={k: v for k, v in record.items() if k not in ("callback", "status")},
            )
        )
    return found
