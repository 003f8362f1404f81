"""Triggers: the ways a run can start, each with its own payload contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

__all__ = ["CronIdempotency", "TriggerSpec", "cron", "manual"]

CronIdempotency = Literal["return_existing_run", "skip_duplicate"]
"""What a second delivery of the same cron window does: hand back the run it already
started, or report the delivery as skipped. ``None`` starts a run per delivery."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerSpec:
    """A declared trigger. Build it with :func:`manual` or :func:`cron`.

    Attributes:
        name: Unique within the workflow.
        kind: ``"manual"`` or ``"cron"``.
        payload: The pydantic model the payload must satisfy; ``None`` accepts only ``{}``.
        expression: Cron expression (5 fields, or ``@hourly``/``@daily``/...), cron only.
        timezone: IANA time zone the expression is evaluated in, cron only.
        idempotency: Duplicate-window behaviour, cron only.
    """

    name: str
    kind: Literal["manual", "cron"]
    payload: type[BaseModel] | None = None
    expression: str | None = None
    timezone: str | None = None
    idempotency: CronIdempotency | None = None


def manual(name: str, *, payload: type[BaseModel] | None = None) -> TriggerSpec:
    """Declare a trigger started by application code (``client.start_run``)."""
    return TriggerSpec(name=name, kind="manual", payload=payload)


def cron(
    name: str,
    expression: str,
    *,
    timezone: str = "Etc/UTC",
    payload: type[BaseModel] | None = None,
    idempotency: CronIdempotency | None = None,
) -> TriggerSpec:
    """Declare a time-based trigger.

    A cron run has no caller to supply a payload, so every field of ``payload`` needs a
    default (literal or dynamic, see :mod:`squidmesh_sdk.definition.defaults`).

    Args:
        name: Trigger name.
        expression: Five-field cron expression, or an alias such as ``"@daily"``.
        timezone: IANA zone (``"Europe/Berlin"``); windows follow its DST rules.
        payload: Payload model; all fields must have defaults.
        idempotency: ``"return_existing_run"`` or ``"skip_duplicate"`` to allow one run per
            schedule window; ``None`` starts a run for every delivery.
    """
    return TriggerSpec(
        name=name,
        kind="cron",
        payload=payload,
        expression=expression,
        timezone=timezone,
        idempotency=idempotency,
    )
