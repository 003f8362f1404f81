"""Stored errors have one shape with a ``kind`` and the step's own ``code``; old rows still read.

Bad input to a public call raises a ``SquidmeshError`` with a ``code``, never a bare
``ValueError``, ``TypeError`` or driver error.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from squidmesh_sdk import (
    COMPLETE,
    Client,
    InvalidArgument,
    InvalidPayload,
    InvalidRunId,
    NonRetryableError,
    Retry,
    RetryAfter,
    SquidmeshError,
    Workflow,
    manual,
)
from squidmesh_sdk.error_records import KINDS
from squidmesh_sdk.store import schema
from tests.integration.runtime.conftest import MakeEnv

SHAPE = {"kind", "message", "code", "type", "retryable", "step", "details", "cause"}


def assert_shape(error: Any) -> None:
    """``error`` and its causes have exactly the documented keys (attempts add a traceback)."""
    assert error is not None
    assert set(error) - {"traceback"} == SHAPE
    assert error["kind"] in KINDS
    assert error["code"] is None or isinstance(error["code"], str)
    assert isinstance(error["retryable"], bool)
    assert isinstance(error["details"], dict)
    if error["cause"] is not None:
        assert_shape(error["cause"])


class GatewayError(Exception):
    code = "gateway_down"


class LegacyError(Exception):
    code = 503  # not a string: not a code


def one_step(body: Callable[[], Any], **options: Any) -> Workflow:
    wf = Workflow("single", triggers=[manual("go", payload=None)])
    wf.chain(wf.step(name="charge", **options)(body), COMPLETE)
    return wf


def test_a_non_retryable_error_keeps_its_code_and_details_everywhere(make_env: MakeEnv) -> None:
    def charge() -> None:
        raise NonRetryableError(
            "card declined", code="card_declined", details={"decline": "insufficient_funds"}
        )

    env = make_env(one_step(charge, retry=Retry(max_attempts=3)))
    run = env.client.inspect_run(env.start_run("single").id, include_history=True)
    expected = {
        "kind": "step_error",
        "message": "card declined",
        "code": "card_declined",
        "type": "squidmesh_sdk.errors.NonRetryableError",
        "retryable": False,
        "step": "charge",
        "details": {"decline": "insufficient_funds"},
        "cause": None,
    }
    assert (run.status, run.last_error) == ("failed", expected)
    step_run = run.step_run("charge")
    assert step_run is not None
    (attempt,) = step_run.attempts or ()
    assert step_run.last_error is not None
    assert attempt.error is not None
    assert {k: v for k, v in step_run.last_error.items() if k != "traceback"} == expected
    assert {k: v for k, v in attempt.error.items() if k != "traceback"} == expected
    assert "NonRetryableError: card declined" in attempt.error["traceback"]


def test_any_exception_with_a_string_code_keeps_it_and_its_cause_has_the_same_shape(
    make_env: MakeEnv,
) -> None:
    def charge() -> None:
        try:
            raise LegacyError("upstream said 503")
        except LegacyError as exc:
            raise GatewayError("gateway down") from exc

    env = make_env(one_step(charge))
    run = env.client.inspect_run(env.start_run("single").id)
    error = run.last_error
    assert_shape(error)
    assert error is not None
    assert (error["kind"], error["code"], error["retryable"]) == (
        "step_error",
        "gateway_down",
        True,
    )
    assert error["type"].endswith("GatewayError")
    cause = error["cause"]
    assert (cause["message"], cause["code"], cause["cause"]) == ("upstream said 503", None, None)
    assert cause["type"].endswith("LegacyError")


def test_retry_after_carries_a_code_and_its_delay(make_env: MakeEnv) -> None:
    calls: list[int] = []

    def charge() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RetryAfter(30, "slow down", code="rate_limited")

    env = make_env(one_step(charge, retry=Retry(max_attempts=2)))
    run = env.start_run("single")
    retrying = env.client.inspect_run(run.id)
    assert retrying.status == "retrying"
    assert_shape(retrying.last_error)
    assert retrying.last_error is not None
    assert retrying.last_error["code"] == "rate_limited"
    assert retrying.last_error["details"] == {"retry_after": 30.0}
    env.advance(30)
    assert env.client.inspect_run(run.id).status == "completed"


def test_input_and_output_failures_are_stored_in_the_one_shape(make_env: MakeEnv) -> None:
    def needs(amount: int) -> None:
        return None

    def returns_nan() -> dict[str, float]:
        return {"x": math.nan}

    def untyped():  # no return annotation: its outputs are unknown
        return {}

    # An untyped step before it leaves the input check to run time, which is what this tests.
    needy = Workflow("single", triggers=[manual("go", payload=None)])
    needy.chain(needy.step(untyped), needy.step(name="charge")(needs), COMPLETE)
    env = make_env(needy)
    input_error = env.client.inspect_run(env.start_run("single").id).last_error
    assert_shape(input_error)
    assert input_error is not None
    assert (input_error["kind"], input_error["code"]) == ("input_validation", "step_input_invalid")
    assert input_error["details"]["missing_inputs"] == ["amount"]

    env = make_env(one_step(returns_nan))
    output_error = env.client.inspect_run(env.start_run("single").id).last_error
    assert_shape(output_error)
    assert output_error is not None
    assert output_error["kind"] == "output_invalid"


def _old_shapes(database_url: str, run_id: str) -> None:
    """Write errors as releases before one shape did, straight into the tables."""
    old_run_error = {
        "message": "workflow step failed and compensation failed",
        "failed_step": "charge",
        "cause": {"step": "charge", "message": "boom", "type": "builtins.ValueError"},
        "compensation_failures": [{"step": "reserve", "message": "cannot undo"}],
    }
    old_dispatch_error = {
        "message": "failed to dispatch workflow step",
        "next_step": "b",
        "cause": "Conn: refused",
    }
    old_attempt_error = {
        "message": "step attempt abandoned: the worker running it stopped",
        "reason": "worker_lost",
    }
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            schema.runs.update()
            .where(schema.runs.c.id == uuid.UUID(run_id))
            .values(last_error=old_run_error)
        )
        step_run_ids = connection.execute(
            sa.select(schema.step_runs.c.id).where(schema.step_runs.c.run_id == uuid.UUID(run_id))
        ).scalars()
        for step_run_id in step_run_ids:
            connection.execute(
                schema.step_runs.update()
                .where(schema.step_runs.c.id == step_run_id)
                .values(last_error=old_dispatch_error)
            )
            connection.execute(
                schema.attempts.update()
                .where(schema.attempts.c.step_run_id == step_run_id)
                .values(error=old_attempt_error)
            )
            connection.execute(  # the latest attempt, held in the step run's row
                schema.step_runs.update()
                .where(
                    schema.step_runs.c.id == step_run_id,
                    schema.step_runs.c.attempt_id.is_not(None),
                )
                .values(attempt_error=old_attempt_error)
            )
    engine.dispose()


def test_errors_stored_by_older_releases_are_read_in_the_one_shape(
    make_env: MakeEnv, database_url: str
) -> None:
    def charge() -> None:
        raise ValueError("boom")

    env = make_env(one_step(charge))
    run_id = env.start_run("single").id
    _old_shapes(database_url, run_id)
    run = env.client.inspect_run(run_id, include_history=True)
    assert_shape(run.last_error)
    assert run.last_error is not None
    assert run.last_error["kind"] == "compensation_failed"
    assert run.last_error["cause"]["message"] == "boom"
    step_run = run.step_run("charge")
    assert step_run is not None
    assert_shape(step_run.last_error)
    assert step_run.last_error is not None
    assert step_run.last_error["kind"] == "dispatch_failed"
    assert step_run.last_error["details"]["reason"] == "Conn: refused"
    (attempt,) = step_run.attempts or ()
    assert attempt.error is not None
    assert (attempt.error["kind"], attempt.error["code"]) == ("abandoned", "worker_lost")
    explanation = env.client.explain_run(run_id)
    assert explanation.details["last_error"] == run.last_error


def _bad_calls(client: Client, run_id: str) -> list[tuple[Callable[[], Any], type[Exception]]]:
    not_a_name: Any = 123
    return [
        (lambda: client.list_runs(status="bogus"), InvalidArgument),
        (lambda: client.list_runs(limit=0), InvalidArgument),
        (lambda: client.list_runs(workflow=not_a_name), InvalidArgument),
        (lambda: client.list_runs(workflow="single\x00"), InvalidArgument),
        (lambda: client.list_runs(after="not-a-run"), InvalidRunId),
        (lambda: client.start_run(not_a_name), InvalidArgument),
        (lambda: client.start_run("single", trigger=not_a_name), InvalidArgument),
        (lambda: client.start_run("single", {"x": math.nan}), InvalidPayload),
        (lambda: client.inspect_run("run\x00"), InvalidRunId),
        (lambda: client.definition(not_a_name), InvalidArgument),
        (lambda: client.start_cron_trigger("single", not_a_name), InvalidArgument),
        (lambda: client.cancel_run(not_a_name), InvalidRunId),
    ]


def test_bad_input_to_public_calls_raises_squidmesh_errors_with_codes(make_env: MakeEnv) -> None:
    env = make_env(one_step(lambda: None))
    run_id = env.start_run("single").id
    for call, expected in _bad_calls(env.client, run_id):
        with pytest.raises(SquidmeshError) as raised:
            call()
        assert type(raised.value) is expected
        assert raised.value.code == expected.code
    with pytest.raises(ValueError, match="unknown run status 'bogus'"):
        env.client.list_runs(status="bogus")  # InvalidArgument is still a ValueError


@pytest.mark.parametrize(
    "arguments",
    [
        {"stale_step_timeout": -1},
        {"stale_step_timeout": "soon"},
        {"workflows": 5},
        {"workflows": [5]},
        {"database": 5},
    ],
)
def test_bad_client_arguments_raise_invalid_argument(
    database_url: str, arguments: dict[str, Any]
) -> None:
    given: dict[str, Any] = {"database": database_url, "workflows": [], **arguments}
    with pytest.raises(InvalidArgument) as raised:
        Client(**given)
    assert raised.value.argument == next(iter(arguments))
