"""One graph: dependencies, routes, branches, manual steps and timers together, on both databases.

Each test asserts what an operator sees in ``inspect_run``: step statuses (``skipped`` for a
branch not taken), step-run keys of loop iterations, the route history and the run's status.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    Branch,
    InvalidTransition,
    NonRetryableError,
    Retry,
    Workflow,
    manual,
    when,
)
from squidmesh_sdk.store.records import Run
from squidmesh_sdk.testing import DEFAULT_START
from tests.integration.runtime.conftest import MakeEnv


class Order(BaseModel):
    total: int


class Amount(BaseModel):
    amount: int


class Plan(BaseModel):
    delay: int
    at: str


class Delay(BaseModel):
    delay: object


def _statuses(run: Run) -> dict[str, str]:
    return {step_run.step: step_run.status for step_run in run.step_runs or ()}


def _events(run: Run, kind: str) -> list[Any]:
    return [event for event in run.events or () if event.type == kind]


def order_pipeline() -> Workflow:
    """validate -> reserve + charge in parallel; large orders also need an approval; ship."""
    wf = Workflow("orders_graph", triggers=[manual("order", payload=Order)])

    @wf.step
    def validate(total: int) -> Branch | dict[str, Any]:
        checked = {"checked_total": total}
        return Branch("large", checked) if total >= 1000 else checked

    @wf.step(after=[validate])
    def reserve() -> dict[str, Any]:
        return {"reserved": True}

    @wf.step(after=[validate])
    def charge(total: int) -> dict[str, Any]:
        return {"charged": total}

    approve = wf.approval("approve", output="approval", timeout=3600)
    wf.transition(validate, on="large", to=approve)

    @wf.step(after=[reserve, charge, approve])
    def ship() -> dict[str, Any]:
        return {"shipped": True}

    @wf.step
    def refund(charged: int) -> dict[str, Any]:
        return {"refunded": charged}

    wf.transition(approve, on="error", to=refund)
    return wf


def test_a_small_order_skips_the_approval_and_the_join_still_ships(make_env: MakeEnv) -> None:
    env = make_env(order_pipeline())
    run = env.start_run("orders_graph", {"total": 20})
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert _statuses(done) == {
        "validate": "completed",
        "reserve": "completed",
        "charge": "completed",
        "ship": "completed",
        "approve": "skipped",
        "refund": "skipped",
    }
    assert done.context["shipped"] is True
    skipped = _events(done, "skipped")
    assert sorted(step for event in skipped for step in event.metadata["steps"]) == [
        "approve",
        "refund",
    ]


def test_a_large_order_waits_for_the_approval_beside_parallel_steps(make_env: MakeEnv) -> None:
    env = make_env(order_pipeline(), run_immediately=False)
    run = env.start_run("orders_graph", {"total": 5000})
    env.run_due()
    waiting = env.client.inspect_run(run.id, include_history=True)
    # The approval waits; reserve and charge ran beside it; ship waits for all three.
    assert waiting.status == "paused"
    assert waiting.current_step == "approve"
    assert _statuses(waiting) == {
        "validate": "completed",
        "reserve": "completed",
        "charge": "completed",
        "approve": "running",
    }
    route = _events(waiting, "route_taken")
    assert [(e.step, e.metadata["outcome"], e.metadata["target"]) for e in route] == [
        ("validate", "large", "approve")
    ]
    env.client.approve_run(run.id, actor="manager@example.com")
    env.run_due()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert _statuses(done)["ship"] == "completed"
    assert _statuses(done)["refund"] == "skipped"
    assert done.context["approval"]["decision"] == "approved"


def test_a_rejected_approval_routes_to_refund_and_the_join_is_skipped(make_env: MakeEnv) -> None:
    env = make_env(order_pipeline(), run_immediately=False)
    run = env.start_run("orders_graph", {"total": 5000})
    env.run_due()
    env.client.reject_run(run.id, actor="manager@example.com", comment="too big")
    env.run_due()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert _statuses(done)["refund"] == "completed"
    assert _statuses(done)["ship"] == "skipped"
    assert done.context["refunded"] == 5000
    assert "shipped" not in done.context


def test_an_approval_times_out_onto_its_timeout_route(make_env: MakeEnv) -> None:
    wf = Workflow("timeout_route", triggers=[manual("go")])
    gate = wf.approval("gate", timeout=timedelta(hours=1))
    escalate = wf.log("escalate", message="nobody decided")
    wf.transition(gate, on="ok", to=COMPLETE)
    wf.transition(gate, on="timeout", to=escalate)
    env = make_env(wf)
    run = env.start_run("timeout_route")
    assert env.client.inspect_run(run.id).status == "paused"
    env.advance(timedelta(minutes=59))
    assert env.client.inspect_run(run.id).status == "paused"
    env.advance(timedelta(minutes=2))
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert _statuses(done) == {"gate": "failed", "escalate": "completed"}
    gate_run = done.step_run("gate")
    assert gate_run is not None
    assert gate_run.last_error is not None
    assert gate_run.last_error["code"] == "approval_timed_out"
    assert [e.step for e in _events(done, "timed_out")] == ["gate"]
    # The decision came too late: the approval is no longer waiting.
    with pytest.raises(InvalidTransition):
        env.client.approve_run(run.id, actor="late@example.com")


def test_an_approval_without_timeout_route_fails_the_run_when_it_times_out(
    make_env: MakeEnv,
) -> None:
    wf = Workflow("timeout_fail", triggers=[manual("go")])
    gate = wf.approval("gate", timeout=60)
    wf.transition(gate, on="ok", to=COMPLETE)
    env = make_env(wf)
    run = env.start_run("timeout_fail")
    env.advance(61)
    done = env.client.inspect_run(run.id)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "approval_timed_out"
    explanation = env.client.explain_run(run.id)
    assert (explanation.reason, explanation.step) == ("timed_out", "gate")


def test_a_rejection_without_error_route_fails_the_run(make_env: MakeEnv) -> None:
    wf = Workflow("reject_fail", triggers=[manual("go")])
    gate = wf.approval("gate")
    wf.transition(gate, on="ok", to=COMPLETE)
    env = make_env(wf)
    run = env.start_run("reject_fail")
    failed = env.client.reject_run(run.id, actor="ops")
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["code"] == "approval_rejected"


def review_loop() -> Workflow:
    """draft -> review; a rejection sends the run back to draft; approval publishes."""
    wf = Workflow("review_loop", triggers=[manual("go")])

    @wf.step
    def draft(revision: int = 0) -> dict[str, Any]:
        return {"revision": revision + 1}

    review = wf.approval("review")

    @wf.step
    def publish(revision: int) -> dict[str, Any]:
        return {"published_revision": revision}

    wf.chain(draft, review, publish, COMPLETE)
    wf.transition(review, on="error", to=draft)
    return wf


def test_a_rejection_loops_back_and_reruns_the_draft_until_approved(make_env: MakeEnv) -> None:
    env = make_env(review_loop())
    run = env.start_run("review_loop")
    assert env.client.inspect_run(run.id).current_step == "review"
    env.client.reject_run(run.id, actor="editor", comment="rewrite the intro")
    second = env.client.inspect_run(run.id, include_history=True)
    # The rejection did not publish: the draft ran again, as a new iteration with its own
    # attempt, and the run waits at the second review.
    assert second.status == "paused"
    assert second.current_step == "review@2"
    assert second.context["revision"] == 2
    assert "published_revision" not in second.context
    env.client.reject_run(run.id, actor="editor")
    env.client.approve_run(run.id, actor="editor")
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["published_revision"] == 3
    assert [(sr.step, sr.status) for sr in done.step_runs or ()] == [
        ("draft", "completed"),
        ("review", "completed"),
        ("draft@2", "completed"),
        ("review@2", "completed"),
        ("draft@3", "completed"),
        ("review@3", "completed"),
        ("publish", "completed"),
    ]
    for step_run in done.step_runs or ():
        assert [attempt.number for attempt in step_run.attempts] == [1]


def test_condition_routes_take_the_first_match_and_record_why(make_env: MakeEnv) -> None:
    wf = Workflow("conditions", triggers=[manual("go", payload=Amount)])

    @wf.step
    def score(amount: int) -> dict[str, Any]:
        return {"score": amount * 2}

    high = wf.log("high", message="high")
    mid = wf.log("mid", message="mid")
    low = wf.log("low", message="low")
    wf.transition(score, on="ok", to=high, when=when("output.score").greater_than(100))
    wf.transition(score, on="ok", to=mid, when=when("context.score").greater_than(10))
    wf.transition(score, on="ok", to=low)
    for step in (high, mid, low):
        wf.transition(step, on="ok", to=COMPLETE)
    env = make_env(wf)
    results = {}
    for amount in (80, 20, 1):
        run = env.start_run("conditions", {"amount": amount})
        done = env.client.inspect_run(run.id, include_history=True)
        assert done.status == "completed"
        taken = [name for name, status in _statuses(done).items() if status == "completed"]
        results[amount] = taken
        (event,) = _events(done, "route_taken")
        assert event.step == "score"
        assert event.metadata["target"] == taken[-1]
        if amount == 1:
            assert event.metadata["default"] is True
            assert [c["matched"] for c in event.metadata["conditions"]] == [False, False]
        if amount == 20:
            assert event.metadata["conditions"][0] == {
                "path": "output.score",
                "op": "greater_than",
                "value": 100,
                "observed": 40,
                "matched": False,
            }
    assert results == {80: ["score", "high"], 20: ["score", "mid"], 1: ["score", "low"]}


def test_an_unknown_branch_label_fails_the_run_naming_the_labels(make_env: MakeEnv) -> None:
    wf = Workflow("labels", triggers=[manual("go")])

    @wf.step
    def pick() -> Branch:
        return Branch("purple", {"picked": True})

    wf.transition(pick, on="red", to=COMPLETE)
    wf.transition(pick, on="blue", to=COMPLETE)
    env = make_env(wf)
    run = env.start_run("labels")
    done = env.client.inspect_run(run.id)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "unknown_branch"
    assert "'red', 'blue'" in done.last_error["message"]


def test_computed_waits_and_waits_until_a_datetime(make_env: MakeEnv) -> None:
    wf = Workflow("computed_waits", triggers=[manual("go", payload=Plan)])

    @wf.step
    def plan(delay: int, at: str) -> dict[str, Any]:
        return {"cool_off": delay, "ship_at": at}

    cool = wf.wait("cool_off_wait", duration_from="cool_off")
    until = wf.wait("until_ship", until_from="ship_at")
    done_step = wf.log("done", message="done")
    wf.chain(plan, cool, until, done_step, COMPLETE)
    env = make_env(wf)
    ship_at = (DEFAULT_START + timedelta(hours=2)).isoformat()
    run = env.start_run("computed_waits", {"delay": 600, "at": ship_at})
    assert env.client.inspect_run(run.id).current_step == "cool_off_wait"
    env.advance(599)
    assert env.client.inspect_run(run.id).current_step == "cool_off_wait"
    env.advance(2)
    assert env.client.inspect_run(run.id).current_step == "until_ship"
    env.advance(timedelta(hours=1))
    assert env.client.inspect_run(run.id).current_step == "until_ship"
    env.advance(timedelta(hours=1))
    assert env.client.inspect_run(run.id).status == "completed"


def test_a_wait_reading_a_bad_value_fails_with_invalid_wait(make_env: MakeEnv) -> None:
    wf = Workflow("bad_wait", triggers=[manual("go", payload=Delay)])
    pause_for = wf.wait("pause_for", duration_from="delay")
    wf.chain(pause_for, COMPLETE)
    env = make_env(wf)
    run = env.start_run("bad_wait", {"delay": "soon"})
    done = env.client.inspect_run(run.id)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "invalid_wait"
    assert "'delay' must be a number of seconds" in done.last_error["message"]


def test_a_wait_too_long_for_a_timer_fails_with_invalid_wait(make_env: MakeEnv) -> None:
    # A payload's delay that ends past the year 9999: the start used to raise OverflowError
    # to its caller and leave the run committed, pending at the wait, with no timer.
    wf = Workflow("long_wait", triggers=[manual("go", payload=Delay)])
    pause_for = wf.wait("pause_for", duration_from="delay")
    wf.chain(pause_for, COMPLETE)
    env = make_env(wf)
    run = env.start_run("long_wait", {"delay": 1e12})
    done = env.client.inspect_run(run.id)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "invalid_wait"
    assert "the wait would end after the year 9999" in done.last_error["message"]


def test_a_wait_delays_a_join_in_a_graph_with_several_paths(make_env: MakeEnv) -> None:
    wf = Workflow("wait_join", triggers=[manual("go")])
    first = wf.log("first", message="first")
    hold = wf.wait("hold", duration=300, after=[first])
    other = wf.log("other", message="other", after=[first])

    @wf.step(after=[hold, other])
    def join() -> dict[str, Any]:
        return {"joined": True}

    env = make_env(wf)
    run = env.start_run("wait_join")
    waiting = env.client.inspect_run(run.id, include_history=True)
    assert waiting.status == "running"
    assert _statuses(waiting) == {"first": "completed", "hold": "running", "other": "completed"}
    env.advance(301)
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert _statuses(done)["join"] == "completed"


def test_a_run_past_its_deadline_fails_once_and_compensates(make_env: MakeEnv) -> None:
    undone: list[str] = []
    wf = Workflow("deadline", triggers=[manual("go")], deadline=timedelta(minutes=30))

    @wf.step
    def book() -> dict[str, Any]:
        return {"booked": True}

    @book.compensate
    def unbook() -> None:
        undone.append("unbook")

    gate = wf.approval("gate")
    wf.chain(book, gate, COMPLETE)
    env = make_env(wf)
    run = env.start_run("deadline")
    assert env.client.inspect_run(run.id).status == "paused"
    explanation = env.client.explain_run(run.id)
    assert explanation.details.get("deadline_at") is not None
    env.advance(timedelta(minutes=31))
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "deadline_exceeded"
    assert _statuses(done)["gate"] == "failed"
    assert len(_events(done, "deadline_exceeded")) == 1
    assert undone == ["unbook"]


def test_a_deadline_that_passes_after_completion_does_nothing(make_env: MakeEnv) -> None:
    wf = Workflow("deadline_ok", triggers=[manual("go")], deadline=60)
    wf.chain(wf.log("quick", message="quick"), COMPLETE)
    env = make_env(wf)
    run = env.start_run("deadline_ok")
    assert env.client.inspect_run(run.id).status == "completed"
    env.advance(120)
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert _events(done, "deadline_exceeded") == []


def test_a_retrying_branch_keeps_the_run_open(make_env: MakeEnv) -> None:
    calls: list[int] = []
    wf = Workflow("retry_branch", triggers=[manual("go")])

    @wf.step(retry=Retry(max_attempts=2, backoff=Retry.fixed(60)))
    def flaky() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first try fails")
        return {"flaky": "ok"}

    @wf.step
    def steady() -> dict[str, Any]:
        return {"steady": "ok"}

    env = make_env(wf)
    run = env.start_run("retry_branch")
    waiting = env.client.inspect_run(run.id)
    assert waiting.status == "retrying"
    env.advance(61)
    done = env.client.inspect_run(run.id)
    assert done.status == "completed"
    assert done.context == {"flaky": "ok", "steady": "ok"}


class Lines(BaseModel):
    lines: list[int]


def map_workflow(seen: list[int], running: list[int], peak: list[int]) -> Workflow:
    wf = Workflow("map_lines", triggers=[manual("go", payload=Lines)])
    failures: dict[int, int] = {}

    @wf.step(map_over="lines", map_as="line", max_parallel=3, retry=Retry(max_attempts=2))
    def price(line: int) -> dict[str, Any]:
        running.append(line)
        peak[0] = max(peak[0], len(running))
        seen.append(line)
        if line == 7 and failures.get(line, 0) == 0:
            failures[line] = 1
            running.remove(line)
            raise RuntimeError("flaky line 7")
        running.remove(line)
        return {"line": line, "price": line * 10}

    @wf.step
    def total(price: list[dict[str, Any]]) -> dict[str, Any]:
        return {"total": sum(item["price"] for item in price)}

    wf.chain(price, total, COMPLETE)
    return wf


@pytest.mark.parametrize("count", [0, 1, 50])
def test_a_map_runs_once_per_element_in_order(make_env: MakeEnv, count: int) -> None:
    seen: list[int] = []
    peak = [0]
    env = make_env(map_workflow(seen, [], peak), run_immediately=False)
    lines = list(range(count))
    run = env.start_run("map_lines", {"lines": lines})
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.context["price"] == [{"line": n, "price": n * 10} for n in lines]
    assert done.context["total"] == sum(n * 10 for n in lines)
    elements = [sr for sr in done.step_runs or () if sr.step.startswith("price[")]
    assert sorted(sr.step for sr in elements) == sorted(f"price[{n}]" for n in lines)
    if count == 50:
        # Element 7 failed once and was retried as a second attempt of its own step run.
        retried = done.step_run("price[7]")
        assert retried is not None
        assert [a.status for a in retried.attempts] == ["failed", "completed"]
        assert sorted(set(seen)) == lines


def test_a_map_never_runs_more_than_max_parallel_elements(make_env: MakeEnv) -> None:
    env = make_env(map_workflow([], [], [0]), run_immediately=False)
    run = env.start_run("map_lines", {"lines": list(range(10))})
    assert env.executor.run_next()  # the map step starts: three elements are queued, not ten
    queued = sorted(job["step"] for _, job in env.executor.pending)
    assert queued == ["price[0]", "price[1]", "price[2]"]
    # Deliver one job at a time: the queue never holds more than three elements.
    in_flight_max = 0
    while env.executor.pending:
        in_flight_max = max(in_flight_max, len(env.executor.pending))
        assert env.executor.run_next()
    assert in_flight_max == 3
    assert env.client.inspect_run(run.id).status == "completed"


def test_a_failed_element_fails_the_map_and_compensates_completed_elements(
    make_env: MakeEnv,
) -> None:
    undone: list[int] = []
    wf = Workflow("map_fail", triggers=[manual("go", payload=Lines)])

    @wf.step(map_over="lines", map_as="line")
    def reserve(line: int) -> dict[str, Any]:
        if line == 2:
            raise RuntimeError("out of stock")
        return {"reserved": line}

    @reserve.compensate
    def release(line: int) -> None:
        undone.append(line)

    env = make_env(wf, run_immediately=False)
    run = env.start_run("map_fail", {"lines": [0, 1, 2]})
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "map_element_failed"
    assert sorted(undone) == [0, 1]


def test_a_map_over_a_missing_list_fails_with_invalid_map(make_env: MakeEnv) -> None:
    wf = Workflow("map_missing", triggers=[manual("go")])

    def start():  # untyped: the compiler leaves the keys after it to the run-time check
        return {}

    @wf.step(map_over="nothing_here", after=[wf.step(start)])
    def each(item: int) -> None: ...

    env = make_env(wf)
    run = env.start_run("map_missing")
    done = env.client.inspect_run(run.id)
    assert done.status == "failed"
    assert done.last_error is not None
    assert done.last_error["code"] == "invalid_map"


def test_inspect_lists_each_declared_step_once_with_its_newest_iteration(
    make_env: MakeEnv,
) -> None:
    env = make_env(review_loop())
    run = env.start_run("review_loop")
    env.client.reject_run(run.id, actor="editor")
    waiting = env.client.inspect_run(run.id, include_history=True)
    assert [(s.step, s.status) for s in waiting.steps or ()] == [
        ("draft@2", "completed"),
        ("review@2", "running"),
        ("publish", "waiting"),
    ]


def test_a_step_finishing_after_its_run_failed_is_compensated_too(make_env: MakeEnv) -> None:
    undone: list[str] = []
    started, release = threading.Event(), threading.Event()
    wf = Workflow("late_branch", triggers=[manual("go")])

    @wf.step
    def slow() -> dict[str, Any]:
        started.set()
        assert release.wait(timeout=60), "the test never released the slow branch"
        return {"slow": True}

    @slow.compensate
    def undo_slow() -> None:
        undone.append("slow")

    @wf.step
    def broken() -> None:
        raise NonRetryableError("broken branch")

    env = make_env(wf, run_immediately=False)
    run = env.start_run("late_branch")
    jobs = {job["step"]: job for _, job in env.executor.pending}
    late = threading.Thread(target=lambda: env.client.perform(jobs["slow"]))
    late.start()
    try:
        # Its body must be running when the run fails: a step only queued then is not run.
        assert started.wait(timeout=30), "the slow branch never started"
        assert env.client.perform(jobs["broken"]) == "executed"
        assert env.client.inspect_run(run.id).status == "failed"
    finally:
        release.set()
        late.join(timeout=60)
    env.run_until_idle()  # the compensation queued when the late step completed
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "failed"
    slow_run = done.step_run("slow")
    assert slow_run is not None
    assert slow_run.status == "completed"
    assert undone == ["slow"]


def test_a_map_cancelled_while_an_element_runs_is_cancelling_then_cancelled_and_closed(
    make_env: MakeEnv,
) -> None:
    started, release = threading.Event(), threading.Event()
    wf = Workflow("map_cancel", triggers=[manual("go", payload=Lines)])

    @wf.step(map_over="lines", map_as="line", max_parallel=1)
    def slow(line: int) -> dict[str, Any]:
        started.set()
        assert release.wait(timeout=60), "the test never released the element"
        return {"line": line}

    env = make_env(wf, run_immediately=False)
    run = env.start_run("map_cancel", {"lines": [0, 1, 2]})
    assert env.executor.run_next()  # the map step starts: element 0 is queued
    ((_, element),) = env.executor.pending
    busy = threading.Thread(target=lambda: env.client.perform(element))
    busy.start()
    try:
        assert started.wait(timeout=30), "element 0 never started"
        cancelling = env.client.cancel_run(run.id)
        assert cancelling.status == "cancelling"
        explanation = env.client.explain_run(run.id)
        assert explanation.reason == "cancelling"
        assert explanation.details["running_steps"] == ["slow[0]"]
    finally:
        release.set()
        busy.join(timeout=60)
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    # The map step itself was closed by the cancel; no element after the running one started,
    # and the ones never dispatched were closed by the transaction that finished the cancel.
    assert {sr.step: sr.status for sr in done.step_runs or ()} == {
        "slow": "failed",
        "slow[0]": "completed",
        "slow[1]": "cancelled",
        "slow[2]": "cancelled",
    }
    closed = done.step_run("slow[1]")
    assert closed is not None
    assert closed.last_error is not None
    assert closed.last_error["code"] == "run_cancelled"
    (event,) = [e for e in done.events or () if e.type == "steps_closed"]
    assert event.metadata == {
        "steps": ["slow[1]", "slow[2]"],
        "status": "cancelled",
        "run_status": "cancelled",
    }
    explanation = env.client.explain_run(run.id)
    assert explanation.reason == "cancelled"
    assert explanation.details["closed_steps"] == ["slow[1]", "slow[2]"]
