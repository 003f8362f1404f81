"""Errors about step code.

Raised by it to steer the runtime, or by the runtime about its inputs, outputs and outcome.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from squidmesh_sdk.errors.base import SquidmeshError

__all__ = [
    "NonRetryableError",
    "OutcomeNotStored",
    "RetryAfter",
    "StepInputError",
    "StepOutputError",
    "StepSignal",
    "StepTimeout",
]


class StepTimeout(SquidmeshError, TimeoutError):
    """An async step ran longer than its ``timeout`` and was cancelled.

    It is an ordinary, retryable failure: the step's retry policy decides what happens next.

    Attributes:
        step: The step name.
        timeout: The limit, in seconds.
    """

    code = "step_timeout"

    def __init__(self, step: str, timeout: float) -> None:
        self.step = step
        self.timeout = timeout
        super().__init__(f"step {step!r} ran longer than its timeout of {timeout:g}s")


class StepSignal(SquidmeshError):
    """Base for exceptions that steer a step's retries.

    Step code raises them on purpose; the runtime raises :class:`StepInputError` itself when a
    step's inputs cannot be bound.
    """

    code = "step_signal"


class NonRetryableError(StepSignal):
    """Fail the current attempt and skip the step's retry policy.

    The run then takes the step's error route if it has one, or fails.

    Args:
        message: What went wrong.
        code: A machine-readable code of the step's own (``"card_declined"``), stored with the
            error so callers never match on the message; ``"non_retryable"`` by default.
        details: JSON values stored with the error (``{"decline_reason": "..."}``).
    """

    code = "non_retryable"

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(message)


_MAX_DELAY = 100 * 365 * 86400.0
"""The longest delay a step may ask for, in seconds (the compiler's bound on durations)."""


class RetryAfter(StepSignal):
    """A retryable failure that asks for the next attempt after ``delay``.

    The delay replaces the backoff of the step's retry policy for this attempt only; the
    policy's ``max_attempts`` still applies.

    Attributes:
        delay: Seconds to wait before the next attempt (``>= 0``).
        code: The step's own code for the failure (``"rate_limited"``); ``"retry_after"`` by
            default.
    """

    code = "retry_after"

    def __init__(
        self, delay: float | timedelta, message: str | None = None, *, code: str | None = None
    ) -> None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        # At most a hundred years, as a declared duration: a retry due after the year 9999
        # could not be queued (the run failed with "dispatch_failed", an OverflowError).
        if not math.isfinite(seconds) or not 0 <= seconds <= _MAX_DELAY:
            raise ValueError(
                f"RetryAfter delay must be a finite number of seconds from 0 to 100 years, "
                f"got {delay!r}"
            )
        self.delay = seconds
        if code is not None:
            self.code = code
        super().__init__(message or f"retry requested after {seconds:g}s")


class StepInputError(NonRetryableError):
    """A step's inputs could not be bound: required ones are missing or fail validation.

    Retrying would not help, so the attempt fails without retry.

    Attributes:
        step: The step name.
        missing: Required parameters with no value in payload or context.
        invalid: Parameter name to the validation message.
    """

    code = "step_input_invalid"

    def __init__(
        self, step: str, *, missing: Sequence[str] = (), invalid: Mapping[str, str] | None = None
    ) -> None:
        self.step = step
        self.missing = tuple(missing)
        self.invalid = dict(invalid or {})
        parts = []
        if self.missing:
            parts.append("missing inputs: " + ", ".join(self.missing))
        if self.invalid:
            parts.append(
                "invalid inputs: " + "; ".join(f"{k} ({v})" for k, v in self.invalid.items())
            )
        super().__init__(f"step {step!r} cannot start: " + "; ".join(parts))
        self.details = {"missing_inputs": list(self.missing), "invalid_inputs": self.invalid}


class StepOutputError(NonRetryableError):
    """A step returned something the runtime cannot store.

    Steps return a mapping, a pydantic model, a dataclass or ``None``, with strict JSON values
    (see :mod:`squidmesh_sdk.strict_json`: no NaN or infinity, no NUL character or lone
    surrogate, bytes only as UTF-8, nested at most 64 deep). Retrying would return the same
    thing, so the attempt fails without retry.

    Attributes:
        step: The step name.
        path: The JSON path of the offending value (``$.items[2].price``), when there is one.
    """

    code = "step_output_invalid"

    def __init__(self, step: str, problem: str, *, path: str | None = None) -> None:
        self.step = step
        self.path = path
        where = f" at {path}" if path else ""
        super().__init__(f"step {step!r} {problem}{where}")
        self.details = {"path": path} if path else {}


class OutcomeNotStored(NonRetryableError):
    """The database refused to record a step's outcome (not a lost connection).

    Raised by the runtime, never by step code: the step's result was rolled back and the step
    fails with this error, recorded in a fresh transaction, instead of being run again. The
    database's error is chained as ``__cause__``.

    Attributes:
        step: The step name.
    """

    code = "outcome_not_stored"

    def __init__(self, step: str, problem: str) -> None:
        self.step = step
        super().__init__(f"step {step!r}: the database refused to record its outcome ({problem})")
