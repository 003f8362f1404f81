"""The run state machine: every (from, to) pair, unknown statuses, and when to schedule work."""

from __future__ import annotations

import pytest

from squidmesh_sdk import InvalidTransition
from squidmesh_sdk.state_machine import (
    STATES,
    TERMINAL,
    can_transition,
    check_transition,
    schedule_next_step,
)

# The reference's table, written out: status -> statuses it may move to.
EXPECTED: dict[str, set[str]] = {
    "pending": {"running", "failed", "cancelled"},
    "running": {"retrying", "paused", "failed", "completed", "cancelling"},
    "retrying": {"running", "failed", "cancelling"},
    "paused": {"running", "failed", "completed", "cancelled"},
    "cancelling": {"cancelled", "failed"},
    "failed": {"running"},  # only retry_run, an operator's resume
    "completed": set(),
    "cancelled": set(),
}
STATUSES = [
    "pending",
    "running",
    "retrying",
    "paused",
    "failed",
    "completed",
    "cancelling",
    "cancelled",
]
PAIRS = [(a, b) for a in STATUSES for b in STATUSES]


def test_the_statuses_are_the_eight_of_the_reference_in_lifecycle_order() -> None:
    assert list(STATES) == STATUSES
    assert set(TERMINAL) == {"failed", "completed", "cancelled"}


@pytest.mark.parametrize(("from_status", "to_status"), PAIRS)
def test_every_pair_is_allowed_exactly_when_the_table_says_so(
    from_status: str, to_status: str
) -> None:
    allowed = to_status in EXPECTED[from_status]
    assert can_transition(from_status, to_status) is allowed
    if allowed:
        check_transition(from_status, to_status)
        return
    with pytest.raises(InvalidTransition) as raised:
        check_transition(from_status, to_status, run_id="r-1")
    assert (raised.value.from_status, raised.value.to_status) == (from_status, to_status)
    assert raised.value.run_id == "r-1"
    # Operators read it: the run's status in words, not the state machine's move.
    if to_status == "cancelling" and from_status in ("cancelling", "completed", "failed"):
        expected = "already being cancelled" if from_status == "cancelling" else "already"
    elif to_status == "cancelling" and from_status == "cancelled":
        expected = "already cancelled"
    else:
        expected = f"the run is {from_status}"
    assert expected in str(raised.value)
    assert "cannot move" not in str(raised.value)


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [("bogus", "running"), ("pending", "bogus"), ("", ""), ("Running", "paused")],
)
def test_unknown_statuses_are_never_a_valid_move(from_status: str, to_status: str) -> None:
    assert can_transition(from_status, to_status) is False
    with pytest.raises(InvalidTransition) as raised:
        check_transition(from_status, to_status)
    assert (raised.value.from_status, raised.value.to_status) == (from_status, to_status)
    assert raised.value.run_id is None


@pytest.mark.parametrize("status", [*STATUSES, "bogus"])
def test_only_pending_running_and_retrying_runs_get_more_steps(status: str) -> None:
    assert schedule_next_step(status) is (status in {"pending", "running", "retrying"})
