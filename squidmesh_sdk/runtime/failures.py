"""How a failed attempt is recorded, and whether (and when) it is tried again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squidmesh_sdk import error_records, errors
from squidmesh_sdk.graph import StepNode

__all__ = ["RetryDecision", "describe_error", "retry_decision"]


def describe_error(
    exc: BaseException, *, step: str | None = None, with_traceback: bool = True
) -> dict[str, Any]:
    """``exc`` in the stored error shape (:mod:`squidmesh_sdk.error_records`).

    ``kind`` says what failed, ``code`` keeps the exception's own string ``code``, ``details``
    the missing and invalid inputs of ``StepInputError``, the delay ``RetryAfter`` asked for
    or the ``details`` a step gave ``NonRetryableError``. The traceback is kept (truncated from
    the top) for the attempt record.
    """
    return error_records.from_exception(exc, step=step, with_traceback=with_traceback)


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
