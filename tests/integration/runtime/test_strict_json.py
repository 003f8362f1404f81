"""Values that are not strict JSON are refused before any write, the same on both databases.

NaN, infinities, NUL characters, lone surrogates, non-UTF-8 bytes and nesting past
``strict_json.MAX_DEPTH``: a step output fails the step at once (``StepOutputError``, naming the
JSON path); a payload, manual-action metadata or cron signal raises at the call
(``InvalidPayload``, ``InvalidResume``, ``InvalidSchedule``) and leaves nothing behind.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import BaseModel

from samples import manual_approval
from squidmesh_sdk import (
    COMPLETE,
    InvalidPayload,
    InvalidResume,
    InvalidSchedule,
    Retry,
    Workflow,
    cron,
    manual,
)
from squidmesh_sdk.strict_json import MAX_DEPTH
from tests.integration.runtime.conftest import MakeEnv


class Reading(BaseModel):
    value: float


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


BAD_OUTPUTS = [
    pytest.param({"price": math.nan}, "$.price", "nan", id="nan"),
    pytest.param(
        {"items": [{"price": 1}, {"price": 2}, {"price": -math.inf}]},
        "$.items[2].price",
        "-inf",
        id="infinity-in-a-list",
    ),
    pytest.param({"note": "a\x00b"}, "$.note", "NUL", id="nul"),
    pytest.param({"a\x00": 1}, '$["a\\u0000"]', "NUL", id="nul-in-a-key"),
    pytest.param({"name": "\ud800"}, "$.name", "surrogate", id="lone-surrogate"),
    pytest.param({"raw": b"\xff\xfe"}, "$.raw", "not UTF-8", id="non-utf8-bytes"),
    pytest.param({"tree": _nested(5000)}, None, f"deeper than {MAX_DEPTH}", id="5000-deep"),
    # Found only in what the conversion makes of an object (checked again after it).
    pytest.param(
        {"reading": [Reading(value=math.nan)]}, "$.reading[0].value", "nan", id="nan-in-a-model"
    ),
]


@pytest.mark.parametrize(("output", "path", "problem"), BAD_OUTPUTS)
def test_an_output_that_is_not_strict_json_fails_the_step_once_naming_the_path(
    make_env: MakeEnv, output: dict[str, Any], path: str | None, problem: str
) -> None:
    calls: list[int] = []
    wf = Workflow("emit", triggers=[manual("go", payload=None)])

    @wf.step(retry=Retry(max_attempts=3))
    def produce() -> dict[str, Any]:
        calls.append(1)
        return output

    wf.chain(produce, COMPLETE)
    env = make_env(wf)
    run = env.start_run("emit")
    failed = env.client.inspect_run(run.id, include_history=True)
    assert (failed.status, failed.current_step, calls) == ("failed", "produce", [1])
    step_run = failed.step_run("produce")
    assert step_run is not None
    assert (step_run.status, step_run.output) == ("failed", None)
    assert [a.status for a in step_run.attempts or ()] == ["failed"]
    error = failed.last_error
    assert error is not None
    assert (error["kind"], error["code"], error["retryable"]) == (
        "output_invalid",
        "step_output_invalid",
        False,
    )
    assert error["step"] == "produce"
    assert problem in error["message"]
    if path is not None:
        assert error["details"]["path"] == path
        assert path in error["message"]
    else:
        assert error["details"]["path"].startswith("$.tree.x.x")
    # What is stored reads back as strict JSON.
    json.dumps([failed.last_error, failed.context, step_run.last_error], allow_nan=False)


class Order(BaseModel):
    amount: float
    note: str = ""
    tags: dict[str, Any] = {}


def _orders() -> Workflow:
    wf = Workflow("orders", triggers=[manual("place", payload=Order)])

    @wf.step
    def record(amount: float) -> dict[str, Any]:
        return {"recorded": amount}

    wf.chain(record, COMPLETE)
    return wf


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"amount": math.nan}, "amount", id="nan"),
        pytest.param({"amount": "Infinity"}, "amount", id="infinity-parsed-by-the-model"),
        pytest.param({"amount": 1, "note": "x\x00"}, "note", id="nul"),
        pytest.param({"amount": 1, "note": "\udfff"}, "note", id="lone-surrogate"),
        pytest.param({"amount": 1, "tags": {"a": [1, math.inf]}}, "tags.a[1]", id="nested"),
        pytest.param({"amount": 1, "tags": _nested(5000)}, None, id="5000-deep"),
    ],
)
def test_a_payload_that_is_not_strict_json_raises_invalid_payload_and_writes_nothing(
    make_env: MakeEnv, payload: dict[str, Any], field: str | None
) -> None:
    env = make_env(_orders())
    with pytest.raises(InvalidPayload) as raised:
        env.client.start_run("orders", payload)
    assert raised.value.code == "invalid_payload"
    (name,) = raised.value.invalid_fields
    if field is not None:
        assert name == field
    else:
        assert name.startswith("tags.x.x")
    assert "not strict JSON" in raised.value.invalid_fields[name]
    assert env.client.list_runs() == []
    accepted = env.start_run("orders", {"amount": 1.5})
    assert env.client.inspect_run(accepted.id).context == {"recorded": 1.5}


@pytest.mark.parametrize(
    ("action", "field"),
    [
        pytest.param({"metadata": {"score": math.nan}}, "metadata", id="metadata-nan"),
        pytest.param({"metadata": {"note": "\x00"}}, "metadata", id="metadata-nul"),
        pytest.param({"metadata": _nested(5000)}, "metadata", id="metadata-deep"),
        pytest.param({"comment": "ok\x00"}, "comment", id="comment-nul"),
        pytest.param({"actor": {"id": math.inf}}, "actor", id="actor-inf"),
    ],
)
def test_manual_action_values_that_are_not_strict_json_raise_invalid_resume(
    make_env: MakeEnv, action: dict[str, Any], field: str
) -> None:
    env = make_env(manual_approval.workflow)
    run = env.start_run("manual_approval", {"account_id": "acct-1"})
    assert env.client.inspect_run(run.id).status == "paused"
    arguments = {"actor": "ops@example.com", **action}
    with pytest.raises(InvalidResume) as raised:
        env.client.approve_run(run.id, **arguments)
    assert raised.value.code == "invalid_resume"
    assert list(raised.value.problems) == [field]
    assert env.client.inspect_run(run.id).status == "paused"
    approved = env.client.approve_run(run.id, actor="ops@example.com", metadata={"score": 0.5})
    assert approved.status != "paused"


def test_a_cron_signal_that_is_not_strict_json_raises_invalid_schedule(
    make_env: MakeEnv,
) -> None:
    wf = Workflow("hourly", triggers=[cron("tick", "0 * * * *")])

    @wf.step
    def tick() -> None:
        return None

    wf.chain(tick, COMPLETE)
    env = make_env(wf)
    for signal in ({"signal_id": "w\x00"}, {"signal_id": "w", "note": math.nan}):
        with pytest.raises(InvalidSchedule) as raised:
            env.client.start_cron_trigger("hourly", "tick", signal)
        assert raised.value.code == "invalid_schedule_signal"
    assert env.client.list_runs() == []
