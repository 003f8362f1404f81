"""How a failed attempt is recorded, and whether (and when) it is tried again."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

from squidmesh_sdk import errors
from squidmesh_sdk.graph import StepNode

__all__ = ["RetryDecision", "describe_error", "retry_decision"]

_TRACEBACK_LIMIT = 4000


def describe_error(exc: BaseException, *, with_traceback: bool = True) -> dict[str, Any]:
    """A JSON-safe description of ``exc``: message, type, whether it may be retried.

    ``StepInputError`` adds the missing and invalid inputs; ``RetryAfter`` the delay it asked for.
    The traceback is kept (truncated from the top) for the attempt record.
    """
    error: dict[str, Any] = {
        "message": str(exc) or type(exc).__name__,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "retryable": not isinstance(exc, errors.NonRetryableError),
    }
    if isinstance(exc, errors.StepInputError):
        if exc.missing:
            error["missing_inputs"] = list(exc.missing)
        if exc.invalid:
            error["invalid_inputs"] = dict(exc.invalid)
    if isinstance(exc, errors.RetryAfter):
        error["retry_after"] = exc.delay
    if with_traceback and exc.__traceback__ is not None:
        text = "".join(traceback.format_exception(exc))
        error["traceback"] = text[-_TRACEBACK_LIMIT:]
    return error


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to retry, and after how many seconds."""

    retry: bool
    delay: float = 0.0


def retry_decision(node: StepNode, failures: int, exc: BaseException) -> RetryDecision:
    """Apply the step's retry policy after its ``failures``-th failed attempt.

    ``NonRetryableError`` never retries. Otherwise the policy's ``max_attempts`` decides, and
    ``RetryAfter`` replaces the policy's backoff for this one delay. Attempts abandoned by a
    dead worker are not failures: they do not use up the policy.
    """
    attempt = failures
    if isinstance(exc, errors.NonRetryableError):
        return RetryDecision(retry=False)
    if node.retry is None or not node.retry.should_retry(attempt):
        return RetryDecision(retry=False)
    if isinstance(exc, errors.RetryAfter):
        return RetryDecision(retry=True, delay=exc.delay)
    return RetryDecision(retry=True, delay=node.retry.delay_after(attempt))
