"""Retries follow each step's policy; exhausted or non-retryable failures route or fail the run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from squidmesh_sdk import (
    COMPLETE,
    NonRetryableError,
    Retry,
    RetryAfter,
    StepContext,
    Workflow,
    manual,
)
from squidmesh_sdk.runtime.events import RetryScheduled
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv


class GatewayDown(Exception):
    pass


def flaky_workflow(
    *,
    fail_times: int,
    retry: Retry | None,
    error: Exception | None = None,
    error_route: str | None = None,
    recovery: Any = None,
) -> Workflow:
    wf = Workflow("flaky", triggers=[manual("go")])

    @wf.step(retry=retry)
    def call_gateway(ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt <= fail_times:
            raise error if error is not None else GatewayDown("gateway down")
        return {"gateway": {"attempt": ctx.attempt}}

    wf.transition(call_gateway, on="ok", to=COMPLETE)
    if error_route is not None:

        @wf.step
        def issue_credit() -> dict[str, Any]:
            return {"credit": "issued"}

        wf.transition(call_gateway, on="error", to=issue_credit, recovery=recovery)
        wf.transition(issue_credit, on="ok", to=COMPLETE)
    return wf


def _attempts(env: WorkflowEnvironment, run_id: str, step: str) -> list[tuple[int, str]]:
    run = env.client.inspect_run(run_id, include_history=True)
    step_run = run.step_run(step)
    assert step_run is not None
    return [(a.number, a.status) for a in step_run.attempts or ()]


def _due_in(env: WorkflowEnvironment) -> list[float]:
    now = env.clock.now()
    return [(due - now).total_seconds() for due, _ in env.executor.pending]


def test_exponential_backoff_doubles_from_min_up_to_max(make_env: MakeEnv) -> None:
    retry = Retry(max_attempts=5, backoff=Retry.exponential(min=1.0, max=5.0))
    env = make_env(flaky_workflow(fail_times=4, retry=retry))
    run = env.start_run("flaky")
    delays = []
    for _ in range(4):
        current = env.client.inspect_run(run.id)
        assert current.status == "retrying"
        assert current.current_step == "call_gateway"
        assert current.last_error is not None
        assert current.last_error["message"] == "gateway down"
        assert current.last_error["type"].endswith("GatewayDown")
        (delay,) = _due_in(env)
        delays.append(delay)
        assert env.advance(delay - 0.001) == 0, "a retry must not run before its delay"
        assert env.advance(0.001) == 1
    assert delays == [1.0, 2.0, 4.0, 5.0]
    done = env.client.inspect_run(run.id)
    assert done.status == "completed"
    assert done.context == {"gateway": {"attempt": 5}}
    assert _attempts(env, run.id, "call_gateway") == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "failed"),
        (5, "completed"),
    ]
    assert [e.delay for e in env.events.of_type(RetryScheduled)] == delays


def test_the_run_moves_running_retrying_running(make_env: MakeEnv) -> None:
    retry = Retry(max_attempts=2, backoff=Retry.fixed(timedelta(seconds=30)))
    env = make_env(flaky_workflow(fail_times=1, retry=retry))
    run = env.start_run("flaky")
    env.run_until_idle()
    from squidmesh_sdk.runtime.events import RunTransitioned

    moves = [(e.from_status, e.to_status) for e in env.events.of_type(RunTransitioned)]
    assert moves == [
        ("pending", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "completed"),
    ]
    assert env.clock.now() - run.inserted_at == timedelta(seconds=30)


def test_retry_after_overrides_the_backoff(make_env: MakeEnv) -> None:
    retry = Retry(max_attempts=3, backoff=Retry.exponential(min=1.0, max=5.0))
    env = make_env(flaky_workflow(fail_times=1, retry=retry, error=RetryAfter(90, "rate limited")))
    run = env.start_run("flaky")
    assert _due_in(env) == [90.0]
    error = env.client.inspect_run(run.id).last_error
    assert error is not None
    assert (error["message"], error["details"]["retry_after"]) == ("rate limited", 90.0)
    env.advance(90)
    assert env.client.inspect_run(run.id).status == "completed"


def test_retry_after_without_a_retry_policy_still_fails(make_env: MakeEnv) -> None:
    env = make_env(flaky_workflow(fail_times=1, retry=None, error=RetryAfter(5)))
    run = env.start_run("flaky")
    assert env.client.inspect_run(run.id).status == "failed"
    assert env.executor.pending == []


def test_exhausted_retries_without_an_error_route_fail_the_run(make_env: MakeEnv) -> None:
    retry = Retry(max_attempts=3, backoff=Retry.fixed(1.0))
    env = make_env(flaky_workflow(fail_times=99, retry=retry))
    run = env.start_run("flaky")
    env.run_until_idle()
    failed = env.client.inspect_run(run.id, include_history=True)
    assert failed.status == "failed"
    assert failed.current_step == "call_gateway"
    assert failed.last_error is not None
    assert failed.last_error["step"] == "call_gateway"
    assert failed.last_error["message"] == "gateway down"
    assert "traceback" not in failed.last_error
    assert _attempts(env, run.id, "call_gateway") == [(1, "failed"), (2, "failed"), (3, "failed")]
    step_run = failed.step_run("call_gateway")
    assert step_run is not None
    assert step_run.attempts is not None
    assert step_run.attempts[-1].error is not None
    assert "GatewayDown: gateway down" in step_run.attempts[-1].error["traceback"]
    assert failed.events == ()


def test_exhausted_retries_take_the_error_route_and_record_its_label(make_env: MakeEnv) -> None:
    retry = Retry(max_attempts=2, backoff=Retry.fixed(1.0))
    wf = flaky_workflow(fail_times=99, retry=retry, error_route="credit", recovery="compensation")
    env = make_env(wf)
    run = env.start_run("flaky")
    env.run_until_idle()
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert done.last_error is None
    assert done.context == {"credit": "issued"}
    gateway = done.step_run("call_gateway")
    assert gateway is not None
    assert gateway.status == "failed"
    assert gateway.recovery is not None
    assert gateway.recovery["failure"] == {"strategy": "compensation", "target": "issue_credit"}
    assert [(e.type, e.step, e.metadata) for e in done.events or ()] == [
        ("compensation_routed", "call_gateway", {"target": "issue_credit"}),
        ("route_taken", "call_gateway", {"outcome": "error", "target": "issue_credit"}),
    ]


def test_an_unlabelled_error_route_records_only_the_route_taken(make_env: MakeEnv) -> None:
    env = make_env(flaky_workflow(fail_times=1, retry=None, error_route="credit"))
    run = env.start_run("flaky")
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert [(e.type, e.step, e.metadata) for e in done.events or ()] == [
        ("route_taken", "call_gateway", {"outcome": "error", "target": "issue_credit"})
    ]
    gateway = done.step_run("call_gateway")
    assert gateway is not None
    assert gateway.recovery is not None
    # Routed, with no recovery label: the error route's outcome names the strategy.
    assert gateway.recovery["failure"] == {"strategy": "error", "target": "issue_credit"}


def test_a_non_retryable_error_fails_at_once_despite_the_policy(make_env: MakeEnv) -> None:
    retry = Retry(max_attempts=5, backoff=Retry.fixed(1.0))
    env = make_env(
        flaky_workflow(fail_times=1, retry=retry, error=NonRetryableError("card declined"))
    )
    run = env.start_run("flaky")
    failed = env.client.inspect_run(run.id)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert (failed.last_error["message"], failed.last_error["retryable"]) == (
        "card declined",
        False,
    )
    assert _attempts(env, run.id, "call_gateway") == [(1, "failed")]
    assert env.executor.pending == []


def test_a_non_retryable_error_takes_the_error_route(make_env: MakeEnv) -> None:
    wf = flaky_workflow(
        fail_times=1,
        retry=Retry(max_attempts=5),
        error=NonRetryableError("declined"),
        error_route="credit",
        recovery="undo",
    )
    env = make_env(wf)
    run = env.start_run("flaky")
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "completed"
    assert [e.type for e in done.events or ()] == ["undo_routed", "route_taken"]


def test_a_failing_retry_dispatch_fails_the_run(make_env: MakeEnv) -> None:
    env = make_env(flaky_workflow(fail_times=1, retry=Retry(max_attempts=3)), run_immediately=False)
    run = env.start_run("flaky")
    env.executor.fail_next()  # armed after the first dispatch: the retry's enqueue fails
    env.run_due()
    failed = env.client.inspect_run(run.id)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert failed.last_error["kind"] == "dispatch_failed"
    assert failed.last_error["message"] == "failed to dispatch workflow step"
    assert failed.last_error["step"] == "call_gateway"
    assert failed.last_error["cause"]["message"] == "gateway down"
    assert env.executor.pending == []
    assert env.events.of_type(RetryScheduled) == []
