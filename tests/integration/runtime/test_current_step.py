"""``current_step`` follows one rule in both graph shapes, and ``explain_run`` agrees with it.

The rule (docs/runtime.md): it names the one step the run's status is about — the step a
transition run is about to run or is running, the step a retrying run waits to retry, the step
a paused run waits at, the step whose failure failed the run — and is ``None`` when no single
step is (a dependency run in progress, a finished or cancelled run).
"""

from __future__ import annotations

from typing import Any

from squidmesh_sdk import COMPLETE, Retry, StepContext, Workflow, manual
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv

RETRY = Retry(max_attempts=2, backoff=Retry.fixed(10))


def transition_shape() -> Workflow:
    wf = Workflow("transition_shape", triggers=[manual("go")])

    @wf.step
    def first() -> dict[str, Any]:
        return {"first": 1}

    @wf.step(retry=RETRY)
    def flaky(ctx: StepContext) -> dict[str, Any]:
        raise ConnectionError(f"down (attempt {ctx.attempt})")

    wf.chain(first, flaky, COMPLETE)
    return wf


def dependency_shape() -> Workflow:
    wf = Workflow("dependency_shape", triggers=[manual("go")])

    @wf.step
    def right() -> dict[str, Any]:
        return {"right": "R"}

    @wf.step(retry=RETRY)
    def flaky(ctx: StepContext) -> dict[str, Any]:
        raise ConnectionError(f"down (attempt {ctx.attempt})")

    @wf.step(after=[right, flaky])
    def join(right: str) -> dict[str, Any]:
        return {"joined": right}

    return wf


def _observe(env: WorkflowEnvironment, run_id: str) -> tuple[str, str | None, str, str | None]:
    """Status and current step as inspect_run reports them, and explain_run's reason and step.

    explain_run's evidence carries the same current step; its ``step`` is the current step
    whenever there is one.
    """
    run = env.client.inspect_run(run_id)
    explanation = env.client.explain_run(run_id)
    assert explanation.evidence["run"]["current_step"] == run.current_step
    if run.current_step is not None:
        assert explanation.step == run.current_step
    return run.status, run.current_step, explanation.reason, explanation.step


def test_a_transition_run_names_its_step_until_it_finishes(make_env: MakeEnv) -> None:
    env = make_env(transition_shape(), run_immediately=False)
    run = env.start_run("transition_shape")
    assert _observe(env, run.id) == ("pending", "first", "pending_dispatch", "first")
    env.run_due()
    assert _observe(env, run.id) == ("retrying", "flaky", "waiting_for_retry", "flaky")
    env.run_until_idle()
    assert _observe(env, run.id) == ("failed", "flaky", "retry_exhausted", "flaky")


def test_a_dependency_run_names_the_step_it_retries_and_the_step_that_failed_it(
    make_env: MakeEnv,
) -> None:
    env = make_env(dependency_shape(), run_immediately=False)
    run = env.start_run("dependency_shape")
    # In progress: several steps may be in flight, none is "the" current one.
    assert _observe(env, run.id) == ("pending", None, "waiting_for_dependencies", "join")
    env.run_due()  # right completes, flaky fails its first attempt
    assert _observe(env, run.id) == ("retrying", "flaky", "waiting_for_retry", "flaky")
    env.run_until_idle()
    assert _observe(env, run.id) == ("failed", "flaky", "retry_exhausted", "flaky")


def test_finished_and_cancelled_runs_name_no_step(make_env: MakeEnv) -> None:
    env = make_env(transition_shape(), dependency_shape(), run_immediately=False)
    for workflow in ("transition_shape", "dependency_shape"):
        run = env.start_run(workflow)
        env.run_due()
        assert env.client.cancel_run(run.id).current_step is None
        assert _observe(env, run.id) == ("cancelled", None, "cancelled", None)
