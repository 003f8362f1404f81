"""Who cancelled a run and why: recorded in its audit trail with the cancellation itself."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from samples import manual_approval
from squidmesh_sdk import InvalidResume, InvalidTransition
from squidmesh_sdk.store.records import AuditEvent
from tests.integration.runtime.conftest import MakeEnv
from tests.integration.runtime.test_cancellation import blocking, waiting


def _cancellations(events: tuple[AuditEvent, ...] | None) -> list[AuditEvent]:
    return [event for event in events or () if event.type == "cancelled"]


def test_a_cancelled_paused_run_records_actor_reason_and_step(make_env: MakeEnv) -> None:
    env = make_env(manual_approval.workflow)
    run = env.start_run("manual_approval", {"account_id": "acct-1"})
    cancelled = env.client.cancel_run(run.id, actor="ops@example.com", reason="duplicate order")
    assert cancelled.status == "cancelled"
    done = env.client.inspect_run(run.id, include_history=True)
    assert [event.type for event in done.events or ()] == ["paused", "cancelled"]
    (event,) = _cancellations(done.events)
    assert (event.step, event.actor, event.comment, event.metadata) == (
        "wait_for_approval",
        "ops@example.com",
        "duplicate order",
        {"status": "cancelled"},
    )
    evidence = env.client.explain_run(run.id).evidence["cancellation"]
    assert evidence == {
        "actor": "ops@example.com",
        "reason": "duplicate order",
        "step": "wait_for_approval",
        "at": event.at.isoformat(),
    }


def test_a_cancellation_without_actor_is_still_audited(make_env: MakeEnv) -> None:
    env = make_env(waiting([]))
    run = env.start_run("waiting")
    env.client.cancel_run(run.id)
    (event,) = _cancellations(env.client.inspect_run(run.id, include_history=True).events)
    assert (event.step, event.actor, event.comment, event.metadata) == (
        "hold",
        None,
        None,
        {"status": "cancelled"},
    )


def test_a_cancelling_run_records_the_request_once(make_env: MakeEnv) -> None:
    started, gate = threading.Event(), threading.Event()
    env = make_env(blocking(started, gate), run_immediately=False)
    run = env.start_run("blocking")
    worker = threading.Thread(target=env.run_due)
    worker.start()
    assert started.wait(timeout=60)
    actor = {"name": "Ada", "team": "payments"}
    assert env.client.cancel_run(run.id, actor=actor).status == "cancelling"
    assert env.client.explain_run(run.id).evidence["cancellation"]["actor"] == actor
    gate.set()
    worker.join(timeout=60)
    done = env.client.inspect_run(run.id, include_history=True)
    assert done.status == "cancelled"
    (event,) = _cancellations(done.events)
    assert (event.actor, event.comment, event.metadata) == (actor, None, {"status": "cancelling"})


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({"actor": ""}, {"actor": "must be a non-empty string or a non-empty mapping"}),
        ({"actor": {}}, {"actor": "must be a non-empty string or a non-empty mapping"}),
        ({"actor": 7}, {"actor": "must be a non-empty string or a non-empty mapping"}),
        ({"reason": "  "}, {"reason": "must be a non-empty string"}),
        ({"reason": 3}, {"reason": "must be a non-empty string"}),
    ],
)
def test_a_malformed_actor_or_reason_changes_nothing(
    make_env: MakeEnv, options: dict[str, Any], problems: dict[str, str]
) -> None:
    env = make_env(waiting([]))
    run = env.start_run("waiting")
    with pytest.raises(InvalidResume) as raised:
        env.client.cancel_run(run.id, **options)
    assert raised.value.problems == problems
    after = env.client.inspect_run(run.id, include_history=True)
    assert after.status == "running"
    assert _cancellations(after.events) == []


def test_actor_and_reason_must_be_strict_json(make_env: MakeEnv) -> None:
    env = make_env(waiting([]))
    run = env.start_run("waiting")
    with pytest.raises(InvalidResume) as raised:
        env.client.cancel_run(run.id, actor={"score": math.nan}, reason="bad\x00byte")
    assert set(raised.value.problems) == {"actor", "reason"}
    assert raised.value.problems["actor"].startswith("must hold strict JSON values only")
    assert raised.value.problems["reason"].startswith("must be text that can be stored")
    assert env.client.inspect_run(run.id).status == "running"


def test_a_refused_cancellation_records_nothing(make_env: MakeEnv) -> None:
    env = make_env(waiting([]))
    run = env.start_run("waiting")
    env.client.cancel_run(run.id, actor="a")
    with pytest.raises(InvalidTransition):
        env.client.cancel_run(run.id, actor="b")
    events = _cancellations(env.client.inspect_run(run.id, include_history=True).events)
    assert [event.actor for event in events] == ["a"]
