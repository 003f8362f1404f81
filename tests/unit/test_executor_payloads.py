"""Executor payloads: what the builders produce, what parse() accepts, and what it rejects."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from squidmesh_sdk import InvalidExecutorPayload, InvalidRunId
from squidmesh_sdk.port.payloads import (
    CompensationJob,
    CronJob,
    StepJob,
    compensation_payload,
    cron_payload,
    parse,
    step_payload,
)
from squidmesh_sdk.store.records import canonical_run_id

RUN_ID = str(uuid.uuid4())


def test_step_payload_round_trips() -> None:
    payload = step_payload(RUN_ID, "charge")
    assert payload == {"kind": "step", "run_id": RUN_ID, "step": "charge"}
    assert parse(payload) == StepJob(RUN_ID, "charge")


def test_compensation_payload_round_trips() -> None:
    payload = compensation_payload(RUN_ID)
    assert payload == {"kind": "compensation", "run_id": RUN_ID}
    assert parse(payload) == CompensationJob(RUN_ID)


def test_cron_payload_round_trips_with_and_without_a_signal() -> None:
    signal = {"scheduled_for": "2026-01-01T08:00:00Z", "idempotency_key": "k"}
    payload = cron_payload("digest", "daily", signal)
    assert payload == {"kind": "cron", "workflow": "digest", "trigger": "daily", "signal": signal}
    assert parse(payload) == CronJob("digest", "daily", signal)
    empties: tuple[dict[str, Any] | None, ...] = (None, {})
    for empty in empties:
        bare = cron_payload("digest", "daily", empty)
        assert bare == {"kind": "cron", "workflow": "digest", "trigger": "daily"}
        assert parse(bare) == CronJob("digest", "daily", None)


def test_payloads_hold_plain_json_and_are_fresh_dicts() -> None:
    signal = {"k": 1}
    payload = cron_payload("w", "t", signal)
    signal["k"] = 2
    assert payload["signal"] == {"k": 1}


def test_run_ids_are_returned_in_canonical_form() -> None:
    value = uuid.uuid4()
    assert parse(step_payload(str(value).upper(), "s")) == StepJob(str(value), "s")
    assert parse({"kind": "compensation", "run_id": value}) == CompensationJob(str(value))


@pytest.mark.parametrize("payload", [None, "step", ["kind", "step"], 42, ("step",)])
def test_a_payload_that_is_not_a_mapping_is_rejected(payload: object) -> None:
    with pytest.raises(InvalidExecutorPayload) as raised:
        parse(payload)
    assert raised.value.problem == "expected a mapping"
    assert raised.value.payload == payload
    assert "expected a mapping" in str(raised.value)


@pytest.mark.parametrize(
    "payload", [{}, {"kind": "nope", "run_id": RUN_ID}, {"kind": None}, {"kind": "STEP"}]
)
def test_an_unknown_kind_is_rejected(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidExecutorPayload, match="unknown kind") as raised:
        parse(payload)
    assert repr(payload.get("kind")) in raised.value.problem


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "step", "run_id": RUN_ID}, "step"),
        ({"kind": "step", "run_id": RUN_ID, "step": ""}, "step"),
        ({"kind": "step", "run_id": RUN_ID, "step": "  "}, "step"),
        ({"kind": "step", "run_id": RUN_ID, "step": 7}, "step"),
        ({"kind": "cron", "trigger": "t"}, "workflow"),
        ({"kind": "cron", "workflow": "", "trigger": "t"}, "workflow"),
        ({"kind": "cron", "workflow": "w"}, "trigger"),
        ({"kind": "cron", "workflow": "w", "trigger": ""}, "trigger"),
        ({"kind": "cron", "workflow": "w", "trigger": None}, "trigger"),
    ],
)
def test_missing_or_empty_names_are_rejected(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidExecutorPayload) as raised:
        parse(payload)
    assert raised.value.problem == f"{field!r} must be a non-empty string"
    assert raised.value.payload == payload


@pytest.mark.parametrize("kind", ["step", "compensation"])
@pytest.mark.parametrize("run_id", ["nope", "", None, 42, RUN_ID[:-1]])
def test_a_run_id_that_is_not_a_uuid_raises_invalid_run_id(kind: str, run_id: object) -> None:
    payload = {"kind": kind, "run_id": run_id, "step": "s"}
    if run_id is None:
        del payload["run_id"]
    with pytest.raises(InvalidRunId) as raised:
        parse(payload)
    assert raised.value.run_id == run_id
    assert "is not a UUID" in str(raised.value)


@pytest.mark.parametrize("signal", ["k", ["k"], 1, True])
def test_a_cron_signal_must_be_a_mapping(signal: object) -> None:
    with pytest.raises(InvalidExecutorPayload) as raised:
        parse({"kind": "cron", "workflow": "w", "trigger": "t", "signal": signal})
    assert raised.value.problem == "'signal' must be a mapping"


@pytest.mark.parametrize(
    "written",
    [RUN_ID, RUN_ID.upper(), "{" + RUN_ID + "}", "urn:uuid:" + RUN_ID, RUN_ID.replace("-", "")],
)
def test_a_run_id_in_any_form_uuid_reads_is_made_canonical(written: str) -> None:
    assert canonical_run_id(written) == RUN_ID
    assert canonical_run_id(uuid.UUID(RUN_ID)) == RUN_ID


@pytest.mark.parametrize("run_id", ["nope", RUN_ID + "\n", RUN_ID + "0", 7, None])
def test_canonical_run_id_refuses_what_is_not_a_uuid(run_id: object) -> None:
    with pytest.raises(InvalidRunId):
        canonical_run_id(run_id)
