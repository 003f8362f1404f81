"""retry_run: a failed run goes on from its failed step, keeping what completed, on both databases.

What an operator sees: which steps ran again (attempt counts, new step-run keys), the context
kept, the ``retried`` audit event, and the refusals (not failed, compensation started,
irreversible steps, a step the run never reached).
"""

from __future__ import annotations

from typing import Any

import pytest

from squidmesh_sdk import (
    COMPLETE,
    InvalidStep,
    InvalidTransition,
    NonRetryableError,
    Retry,
    RetryRefused,
    UnsafeReplay,
    UnsafeRetry,
    Workflow,
    manual,
)
from squidmesh_sdk.store.records import Run
from tests.integration.runtime.conftest import MakeEnv

CALLS: dict[str, int] = {}
BROKEN: set[str] = set()


def _body(name: str, *, irreversible: bool = False) -> Any:
    def body() -> dict[str, Any]:
        CALLS[name] = CALLS.get(name, 0) + 1
        if name in BROKEN:
            raise NonRetryableError(f"{name} broke")
        return {name: CALLS[name]}

    body.__name__ = body.__qualname__ = name
    return body


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    BROKEN.clear()


def line(*, irreversible: str | None = None) -> Workflow:
    """prepare -> charge -> ship, one path."""
    wf = Workflow("line", triggers=[manual("go")])
    steps = [
        wf.step(irreversible=name == irreversible)(_body(name))
        for name in ("prepare", "charge", "ship")
    ]
    wf.chain(*steps, COMPLETE)
    return wf


def _attempts(run: Run) -> dict[str, list[str]]:
    return {sr.step: [a.status for a in sr.attempts or ()] for sr in run.step_runs or ()}


def test_a_failed_run_goes_on_from_its_failed_step(make_env: MakeEnv) -> None:
    BROKEN.add("charge")
    env = make_env(line())
    run = env.start_run("line")
    assert env.client.inspect_run(run.id).status == "failed"
    assert env.client.explain_run(run.id).next_actions[0] == "retry_run"
    BROKEN.clear()
    resumed = env.client.retry_run(run.id, actor="ops", reason="partner is back")
    assert (resumed.status, resumed.current_step) == ("running", "charge@2")
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    # prepare kept its output and did not run again; the failed try keeps its attempt.
    assert CALLS == {"prepare": 1, "charge": 2, "ship": 1}
    assert _attempts(done) == {
        "prepare": ["completed"],
        "charge": ["failed"],
        "charge@2": ["completed"],
        "ship": ["completed"],
    }
    assert done.context == {"prepare": 1, "charge": 2, "ship": 1}
    (event,) = [e for e in done.events or () if e.type == "retried"]
    assert (event.step, event.actor, event.comment) == ("charge", "ops", "partner is back")
    assert event.metadata["from_steps"] == ["charge"]
    assert event.metadata["last_error"]["message"] == "charge broke"
    assert done.operator_retries == 1


def test_a_run_retried_twice_numbers_its_step_runs(make_env: MakeEnv) -> None:
    BROKEN.add("ship")
    env = make_env(line())
    run = env.start_run("line")
    env.client.retry_run(run.id)
    assert env.client.inspect_run(run.id).status == "failed"
    BROKEN.clear()
    env.client.retry_run(run.id)
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert [sr.step for sr in done.step_runs or ()] == [
        "prepare",
        "charge",
        "ship",
        "ship@2",
        "ship@3",
    ]


def test_retry_from_an_earlier_step_runs_what_follows_again(make_env: MakeEnv) -> None:
    BROKEN.add("ship")
    env = make_env(line())
    run = env.start_run("line")
    BROKEN.clear()
    env.client.retry_run(run.id, from_step="charge")
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert CALLS == {"prepare": 1, "charge": 2, "ship": 2}
    assert [sr.step for sr in done.step_runs or ()] == [
        "prepare", "charge", "ship", "charge@2", "ship@2",
    ]  # fmt: skip


def test_retry_is_refused_for_a_run_that_did_not_fail(make_env: MakeEnv) -> None:
    env = make_env(line())
    run = env.start_run("line")
    with pytest.raises(InvalidTransition):
        env.client.retry_run(run.id)


def test_retry_from_a_step_the_run_never_reached_is_refused(make_env: MakeEnv) -> None:
    BROKEN.add("charge")
    env = make_env(line())
    run = env.start_run("line")
    with pytest.raises(InvalidStep, match="never reached"):
        env.client.retry_run(run.id, from_step="ship")
    with pytest.raises(InvalidStep, match="no such step"):
        env.client.retry_run(run.id, from_step="nope")
    assert env.client.inspect_run(run.id).status == "failed"


def test_retry_guards_irreversible_steps_that_would_run_again(make_env: MakeEnv) -> None:
    BROKEN.add("ship")
    env = make_env(line(irreversible="charge"))
    run = env.start_run("line")
    BROKEN.clear()
    with pytest.raises(UnsafeRetry) as refused:
        env.client.retry_run(run.id, from_step="prepare")
    assert isinstance(refused.value, UnsafeReplay)
    assert [step["step"] for step in refused.value.steps] == ["charge"]
    assert env.client.inspect_run(run.id).status == "failed"
    # From the failed step nothing irreversible runs again: allowed without the override.
    env.client.retry_run(run.id)
    assert env.client.inspect_run(run.id).status == "completed"
    assert CALLS["charge"] == 1


def test_retry_is_refused_once_compensation_has_run(make_env: MakeEnv) -> None:
    wf = Workflow("saga", triggers=[manual("go")])

    @wf.step
    def reserve() -> dict[str, Any]:
        return {"reserved": True}

    @reserve.compensate
    def release() -> dict[str, Any]:
        return {"released": True}

    @wf.step
    def charge() -> dict[str, Any]:
        raise NonRetryableError("declined")

    wf.chain(reserve, charge, COMPLETE)
    env = make_env(wf)
    run = env.start_run("saga")
    env.run_until_idle()
    explanation = env.client.explain_run(run.id)
    assert "retry_run" not in explanation.next_actions
    with pytest.raises(RetryRefused) as refused:
        env.client.retry_run(run.id)
    assert refused.value.code == "compensation_started"
    assert "replay the run instead" in str(refused.value)


def test_a_graph_with_several_paths_restarts_its_failed_branch(make_env: MakeEnv) -> None:
    BROKEN.add("right")
    wf = Workflow("fork", triggers=[manual("go")])
    root = wf.step(_body("root"))
    left = wf.step(after=[root])(_body("left"))
    right = wf.step(after=[root], retry=Retry(max_attempts=2))(_body("right"))
    wf.step(after=[left, right])(_body("join"))
    env = make_env(wf)
    run = env.start_run("fork")
    env.run_until_idle()
    assert env.client.inspect_run(run.id).status == "failed"
    BROKEN.clear()
    with pytest.raises(InvalidStep, match="several paths"):
        env.client.retry_run(run.id, from_step="left")
    env.client.retry_run(run.id)
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert CALLS == {"root": 1, "left": 1, "right": 2, "join": 1}
    assert _attempts(done)["right"] == ["failed"]  # a non-retryable error: one attempt
    assert _attempts(done)["right@2"] == ["completed"]
