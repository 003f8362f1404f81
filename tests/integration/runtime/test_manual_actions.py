"""Pauses and approvals: resume paths, their audit trail, persisted targets and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from samples import manual_approval
from squidmesh_sdk import (
    COMPLETE,
    DefinitionUnavailable,
    DispatchFailed,
    InvalidResume,
    InvalidStep,
    InvalidTransition,
    Workflow,
    compile,
    manual,
)
from squidmesh_sdk.testing import WorkflowEnvironment
from tests.integration.runtime.conftest import MakeEnv


def pause_workflow(target_name: str = "after_pause", *, version: str | None = None) -> Workflow:
    wf = Workflow("pausing", triggers=[manual("go")], version=version)
    hold = wf.pause("hold", output="hold")

    def after_pause(hold: dict[str, Any]) -> dict[str, Any]:
        return {"resumed_with": hold}

    after_pause.__name__ = after_pause.__qualname__ = target_name
    step = wf.step(after_pause)
    wf.chain(hold, step, COMPLETE)
    return wf


def _paused(env: WorkflowEnvironment, workflow: str, payload: dict[str, Any] | None = None) -> str:
    run = env.start_run(workflow, payload or {})
    paused = env.client.inspect_run(run.id, include_history=True)
    assert paused.status == "paused"
    return run.id


def test_approval_continues_on_the_ok_route_with_an_audit_trail(make_env: MakeEnv) -> None:
    env = make_env(manual_approval.workflow)
    run_id = _paused(env, "manual_approval", {"account_id": "acct-1"})
    paused = env.client.inspect_run(run_id, include_history=True)
    assert paused.current_step == "wait_for_approval"
    assert [(s.step, s.status) for s in paused.steps or ()] == [
        ("wait_for_approval", "running"),
        ("record_approval", "waiting"),
        ("record_rejection", "waiting"),
    ]
    env.clock.advance(30)
    approved = env.client.approve_run(
        run_id, actor="ops@example.com", comment="looks fine", metadata={"ticket": "OPS-1"}
    )
    assert (approved.status, approved.current_step) == ("running", "record_approval")
    done = env.client.inspect_run(run_id, include_history=True)
    assert done.status == "completed"
    approval = done.context["approval"]
    assert approval["status"] == "approved"
    assert approval["decision"] == "approved"
    assert approval["actor"] == "ops@example.com"
    assert approval["metadata"] == {"ticket": "OPS-1"}
    # The branch not taken is recorded skipped when the run completes.
    assert [(e.type, e.actor, e.comment, e.metadata) for e in done.events or ()] == [
        ("paused", None, None, None),
        ("approved", "ops@example.com", "looks fine", {"ticket": "OPS-1"}),
        ("skipped", None, None, {"steps": ["record_rejection"]}),
    ]
    assert done.step_run("record_rejection") is not None
    assert [(s.step, s.status) for s in done.steps or ()][-1] == ("record_rejection", "skipped")
    gate = done.step_run("wait_for_approval")
    assert gate is not None
    assert gate.manual is not None
    assert (gate.manual["event"], gate.manual["actor"]) == ("approved", "ops@example.com")
    assert [(a.number, a.status) for a in gate.attempts or ()] == [(1, "completed")]


def test_rejection_takes_the_error_route(make_env: MakeEnv) -> None:
    env = make_env(manual_approval.workflow)
    run_id = _paused(env, "manual_approval", {"account_id": "acct-2"})
    env.client.reject_run(run_id, actor={"id": 7, "name": "Ana"})
    done = env.client.inspect_run(run_id, include_history=True)
    assert done.status == "completed"
    assert done.context["approval"]["status"] == "rejected"
    assert done.context["approval"]["actor"] == {"id": 7, "name": "Ana"}
    assert [(e.type, e.metadata) for e in done.events or ()] == [
        ("paused", None),
        ("rejected", None),
        ("route_taken", {"outcome": "error", "target": "record_rejection"}),
        ("skipped", {"steps": ["record_approval"]}),
    ]


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({"actor": None}, {"actor"}),
        ({"actor": ""}, {"actor"}),
        ({"actor": {}}, {"actor"}),
        ({"actor": "ops", "comment": ""}, {"comment"}),
        ({"actor": "ops", "metadata": ["x"]}, {"metadata"}),
        ({"actor": "ops", "metadata": {"at": object()}}, {"metadata"}),
    ],
)
def test_malformed_decisions_are_refused_and_change_nothing(
    make_env: MakeEnv, options: dict[str, Any], problems: set[str]
) -> None:
    env = make_env(manual_approval.workflow)
    run_id = _paused(env, "manual_approval", {"account_id": "acct-3"})
    with pytest.raises(InvalidResume) as raised:
        env.client.approve_run(run_id, **options)
    assert set(raised.value.problems) == problems
    assert env.client.inspect_run(run_id).status == "paused"


def test_the_wrong_kind_of_resume_is_refused(make_env: MakeEnv) -> None:
    env = make_env(manual_approval.workflow, pause_workflow())
    approval_run = _paused(env, "manual_approval", {"account_id": "acct-4"})
    pause_run = _paused(env, "pausing")
    with pytest.raises(InvalidStep, match="waits for an approval, not an unblock"):
        env.client.unblock_run(approval_run)
    with pytest.raises(InvalidStep, match="is a pause, not an approval"):
        env.client.approve_run(pause_run, actor="ops")
    done = env.start_run("pausing")
    env.client.unblock_run(done.id)
    with pytest.raises(InvalidTransition) as raised:
        env.client.unblock_run(done.id)
    assert (raised.value.from_status, raised.value.to_status) == ("completed", "running")


def test_unblock_resumes_a_pause_with_its_output_key(make_env: MakeEnv) -> None:
    env = make_env(pause_workflow())
    run_id = _paused(env, "pausing")
    env.client.unblock_run(run_id, actor="ops", comment="go on")
    done = env.client.inspect_run(run_id, include_history=True)
    assert done.status == "completed"
    assert done.context == {"hold": {}, "resumed_with": {}}
    assert [(e.type, e.actor, e.comment) for e in done.events or ()] == [
        ("paused", None, None),
        ("resumed", "ops", "go on"),
    ]


def test_a_refused_resume_dispatch_rolls_everything_back(make_env: MakeEnv) -> None:
    env = make_env(pause_workflow())
    run_id = _paused(env, "pausing")
    env.executor.fail_next()
    with pytest.raises(DispatchFailed):
        env.client.unblock_run(run_id, actor="ops")
    still = env.client.inspect_run(run_id, include_history=True)
    assert (still.status, still.current_step) == ("paused", "hold")
    assert [e.type for e in still.events or ()] == ["paused"]
    gate = still.step_run("hold")
    assert gate is not None
    assert gate.status == "running"
    env.client.unblock_run(run_id, actor="ops")
    assert env.client.inspect_run(run_id).status == "completed"


def test_a_paused_run_resumes_along_the_routes_of_its_pinned_version(
    make_env: MakeEnv, database_url: str
) -> None:
    env = make_env(pause_workflow("after_pause", version="1"))
    run_id = _paused(env, "pausing")
    # A deploy renames the step after the pause but keeps the declared version (the author
    # claims compatibility): the run resumes along the routes of the definition now deployed
    # under its version, and explain says where it will go.
    redeploy = pause_workflow("renamed", version="1")
    with WorkflowEnvironment([redeploy], database=database_url) as redeployed:
        explanation = redeployed.client.explain_run(run_id)
        assert explanation.reason == "paused_for_manual_action"
        assert explanation.details["resume_target"] == "renamed"
        redeployed.client.unblock_run(run_id, actor="ops")
        done = redeployed.client.inspect_run(run_id, include_history=True)
    assert done.status == "completed"
    assert [sr.step for sr in done.step_runs or ()] == ["hold", "renamed"]


def test_a_paused_run_of_a_version_no_longer_deployed_can_be_cancelled(
    make_env: MakeEnv, database_url: str
) -> None:
    env = make_env(pause_workflow("after_pause"))
    run_id = _paused(env, "pausing")
    pinned = env.client.inspect_run(run_id).definition_version
    # An unversioned deploy that renames a step is a new version: the run keeps its own.
    with WorkflowEnvironment([pause_workflow("renamed")], database=database_url) as redeployed:
        explanation = redeployed.client.explain_run(run_id)
        assert explanation.reason == "definition_unavailable"
        assert explanation.details["version"] == pinned
        assert explanation.next_actions == ("deploy_version", "cancel_run", "replay_run")
        with pytest.raises(DefinitionUnavailable, match="deploy that version"):
            redeployed.client.unblock_run(run_id, actor="ops")
        assert redeployed.client.inspect_run(run_id).status == "paused"
        redeployed.client.cancel_run(run_id)
    assert env.client.inspect_run(run_id).status == "cancelled"


def test_pause_then_cancel_fails_the_paused_step(make_env: MakeEnv) -> None:
    env = make_env(pause_workflow())
    run_id = _paused(env, "pausing")
    cancelled = env.client.cancel_run(run_id)
    assert (cancelled.status, cancelled.current_step) == ("cancelled", None)
    run = env.client.inspect_run(run_id, include_history=True)
    gate = run.step_run("hold")
    assert gate is not None
    assert gate.status == "failed"
    assert gate.last_error is not None
    assert (gate.last_error["kind"], gate.last_error["code"]) == ("cancelled", "cancelled")
    assert gate.last_error["message"] == "run cancelled while paused"
    assert [(a.status, a.error) for a in gate.attempts or ()] == [("failed", gate.last_error)]
    with pytest.raises(InvalidTransition) as raised:
        env.client.unblock_run(run_id, actor="ops")
    assert raised.value.from_status == "cancelled"


def test_approval_routes_are_part_of_the_compiled_graph() -> None:
    definition = compile(manual_approval.workflow)
    assert [e.target for e in definition.routes_from("wait_for_approval", "ok")] == [
        "record_approval"
    ]
    assert [e.target for e in definition.routes_from("wait_for_approval", "error")] == [
        "record_rejection"
    ]
