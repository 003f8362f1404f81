"""Which failed deliveries the Procrastinate executor retries, and how soon."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from procrastinate import jobs

from squidmesh_sdk import (
    DefinitionUnavailable,
    InvalidExecutorPayload,
    InvalidWorkflow,
    RunNotFound,
)
from squidmesh_sdk.executors.procrastinate import TASK_NAME, _CappedBackoff


def _job(attempts: int) -> jobs.Job:
    return jobs.Job(
        id=1,
        queue="squidmesh",
        lock=None,
        queueing_lock=None,
        task_name=TASK_NAME,
        attempts=attempts,
    )


@pytest.mark.parametrize(
    "error",
    [
        InvalidExecutorPayload({"kind": "bogus"}, "unknown kind"),
        RunNotFound("0190a5a5-0000-7000-8000-000000000000"),
    ],
)
def test_a_delivery_that_can_never_succeed_is_not_retried(error: Exception) -> None:
    assert _CappedBackoff().get_retry_decision(exception=error, job=_job(0)) is None


@pytest.mark.parametrize(
    ("attempts", "seconds"), [(0, 1), (1, 2), (2, 4), (5, 32), (6, 60), (40, 60)]
)
def test_other_failures_are_retried_with_capped_exponential_backoff(
    attempts: int, seconds: int
) -> None:
    decision = _CappedBackoff().get_retry_decision(
        exception=ConnectionError("database away"), job=_job(attempts)
    )
    assert decision is not None
    assert decision.retry_at is not None
    assert round((decision.retry_at - datetime.now(UTC)).total_seconds()) == seconds


@pytest.mark.parametrize(
    "error",
    [
        InvalidWorkflow("nightly", ["onboarding"]),
        DefinitionUnavailable("nightly", "1", ["2"]),
    ],
)
@pytest.mark.parametrize("attempts", [0, 5, 40])
def test_a_job_this_worker_cannot_run_goes_back_at_once_without_backoff(
    error: Exception, attempts: int
) -> None:
    # A worker still on the previous deploy, or one holding other workflows or versions: one
    # that holds the job's workflow and version may be idle, so no growing delay.
    decision = _CappedBackoff().get_retry_decision(exception=error, job=_job(attempts))
    assert decision is not None
    assert decision.retry_at is not None
    assert round((decision.retry_at - datetime.now(UTC)).total_seconds()) == 2
