"""Retry verification: the step fails its first attempt and succeeds on the second."""

from __future__ import annotations

from typing import Any

from squidmesh_sdk import COMPLETE, Retry, StepContext, Workflow, manual


class RetryLaterError(Exception):
    """A transient failure, retried by the step's policy."""


workflow = Workflow("retry_verification", triggers=[manual("retry_verification")])


@workflow.step(retry=Retry(max_attempts=3, backoff=Retry.fixed(1.0)))
def exercise_retry(ctx: StepContext) -> dict[str, Any]:
    """Fail once, then succeed."""
    if ctx.attempt == 1:
        raise RetryLaterError("retry later")
    return {"retry": {"succeeded_on_attempt": ctx.attempt}}


workflow.chain(exercise_retry, COMPLETE)
