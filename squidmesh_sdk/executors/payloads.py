"""The JSON payloads executors carry, and their parsing on the way back in.

``{"kind": "step", "run_id": "...", "step": "charge"}``,
``{"kind": "compensation", "run_id": "..."}`` and
``{"kind": "cron", "workflow": "...", "trigger": "...", "signal": {...}}``. They hold names and
ids only, never payload data, so a queue never holds a copy of business data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from squidmesh_sdk import errors
from squidmesh_sdk.store.records import parse_run_id

__all__ = [
    "CompensationJob",
    "CronJob",
    "Job",
    "StepJob",
    "compensation_payload",
    "cron_payload",
    "parse",
    "step_payload",
]


@dataclass(frozen=True, slots=True)
class StepJob:
    """Run ``step`` of run ``run_id``."""

    run_id: str
    step: str


@dataclass(frozen=True, slots=True)
class CompensationJob:
    """Run the saga rollback of run ``run_id``."""

    run_id: str


@dataclass(frozen=True, slots=True)
class CronJob:
    """Start a run of ``workflow`` through cron trigger ``trigger``."""

    workflow: str
    trigger: str
    signal: Mapping[str, Any] | None = None


Job = StepJob | CompensationJob | CronJob


def step_payload(run_id: str, step: str) -> dict[str, Any]:
    """The payload of a step job."""
    return {"kind": "step", "run_id": run_id, "step": step}


def compensation_payload(run_id: str) -> dict[str, Any]:
    """The payload of a compensation job."""
    return {"kind": "compensation", "run_id": run_id}


def cron_payload(
    workflow: str, trigger: str, signal: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The payload of a cron activation; ``signal`` carries its schedule identity."""
    payload: dict[str, Any] = {"kind": "cron", "workflow": workflow, "trigger": trigger}
    if signal:
        payload["signal"] = dict(signal)
    return payload


def parse(payload: object) -> Job:
    """Turn a delivered payload back into a job.

    Raises:
        InvalidExecutorPayload: not a mapping, an unknown ``kind``, or a missing field.
        InvalidRunId: a ``run_id`` that is not a UUID.
    """
    if not isinstance(payload, Mapping):
        raise errors.InvalidExecutorPayload(payload, "expected a mapping")
    kind = payload.get("kind")
    if kind == "step":
        return StepJob(str(parse_run_id(payload.get("run_id"))), _text(payload, "step"))
    if kind == "compensation":
        return CompensationJob(str(parse_run_id(payload.get("run_id"))))
    if kind == "cron":
        signal = payload.get("signal")
        if signal is not None and not isinstance(signal, Mapping):
            raise errors.InvalidExecutorPayload(payload, "'signal' must be a mapping")
        return CronJob(_text(payload, "workflow"), _text(payload, "trigger"), signal)
    raise errors.InvalidExecutorPayload(
        payload, f"unknown kind {kind!r}; expected 'step', 'compensation' or 'cron'"
    )


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidExecutorPayload(payload, f"{key!r} must be a non-empty string")
    return value
