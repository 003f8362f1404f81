"""The JSON payloads executors carry, and their parsing on the way back in.

``{"kind": "step", "run_id": "...", "step": "charge"}``,
``{"kind": "compensation", "run_id": "..."}`` and
``{"kind": "cron", "workflow": "...", "trigger": "...", "signal": {...}}``. They hold names and
ids only, never payload data, so a queue never holds a copy of business data.

When tracing is on, a payload also carries ``"trace"``: the W3C context of the span that sent
it (``"send"``) and of the run (``"run"``), so the span that processes it, in any process,
joins the run's trace and links to its producer.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from squidmesh_sdk import errors
from squidmesh_sdk.frozen import fast_init
from squidmesh_sdk.scoped import Scoped
from squidmesh_sdk.store.records import canonical_run_id

__all__ = [
    "CompensationJob",
    "CronJob",
    "Job",
    "StepJob",
    "carrying",
    "compensation_payload",
    "cron_payload",
    "parse",
    "step_payload",
]


@fast_init
@dataclass(frozen=True, slots=True)
class StepJob:
    """Run ``step`` of run ``run_id``."""

    run_id: str
    step: str
    trace: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CompensationJob:
    """Run the saga rollback of run ``run_id``."""

    run_id: str
    trace: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CronJob:
    """Start a run of ``workflow`` through cron trigger ``trigger``."""

    workflow: str
    trigger: str
    signal: Mapping[str, Any] | None = None
    trace: Mapping[str, Any] | None = None


Job = StepJob | CompensationJob | CronJob


_trace: ContextVar[Mapping[str, Any] | None] = ContextVar("squidmesh_job_trace", default=None)


def carrying(trace: Mapping[str, Any] | None) -> Scoped[Mapping[str, Any] | None]:
    """Payloads built inside the block carry ``trace`` (the dispatcher's send span and run)."""
    return Scoped(_trace, trace)


def _with_trace(payload: dict[str, Any]) -> dict[str, Any]:
    trace = _trace.get()
    if trace:
        payload["trace"] = dict(trace)
    return payload


def step_payload(run_id: str, step: str) -> dict[str, Any]:
    """The payload of a step job."""
    return _with_trace({"kind": "step", "run_id": run_id, "step": step})


def compensation_payload(run_id: str) -> dict[str, Any]:
    """The payload of a compensation job."""
    return _with_trace({"kind": "compensation", "run_id": run_id})


def cron_payload(
    workflow: str, trigger: str, signal: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The payload of a cron activation; ``signal`` carries its schedule identity."""
    payload: dict[str, Any] = {"kind": "cron", "workflow": workflow, "trigger": trigger}
    if signal:
        payload["signal"] = dict(signal)
    _with_trace(payload)
    return payload


def parse(payload: object) -> Job:
    """Turn a delivered payload back into a job.

    Raises:
        InvalidExecutorPayload: not a mapping, an unknown ``kind``, or a missing field.
        InvalidRunId: a ``run_id`` that is not a UUID.
    """
    # ``type(...) is dict`` first: an ABC's isinstance is a Python call (``abc``'s), and
    # every delivery parses a payload.
    if type(payload) is not dict and not isinstance(payload, Mapping):
        raise errors.InvalidExecutorPayload(payload, "expected a mapping")
    kind = payload.get("kind")
    trace = payload.get("trace")
    if trace is not None and type(trace) is not dict and not isinstance(trace, Mapping):
        trace = None  # a malformed trace context never stops the work
    if kind == "step":
        return StepJob(canonical_run_id(payload.get("run_id")), _text(payload, "step"), trace)
    if kind == "compensation":
        return CompensationJob(canonical_run_id(payload.get("run_id")), trace)
    if kind == "cron":
        signal = payload.get("signal")
        if signal is not None and not isinstance(signal, Mapping):
            raise errors.InvalidExecutorPayload(payload, "'signal' must be a mapping")
        return CronJob(_text(payload, "workflow"), _text(payload, "trigger"), signal, trace)
    raise errors.InvalidExecutorPayload(
        payload, f"unknown kind {kind!r}; expected 'step', 'compensation' or 'cron'"
    )


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidExecutorPayload(payload, f"{key!r} must be a non-empty string")
    return value
