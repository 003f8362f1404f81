"""The app of the ``jobs`` and ``workflows`` CLI tests: a saga, a cron trigger, two versions.

The database comes from ``SQUIDMESH_TEST_APP_DB``, as for :mod:`tests.cli.app`.
"""

from __future__ import annotations

import os
from typing import Any

from samples import daily_digest, saga_checkout
from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    InlineExecutor,
    NonRetryableError,
    Retry,
    StepContext,
    Workflow,
    manual,
)
from squidmesh_sdk.clock import Clock
from tests.cli.app import DB_ENV_VAR

OPS_APP = "tests.cli.ops_app:make_client"
INLINE_APP = "tests.cli.ops_app:inline_client"


def shipping(version: str, *, gift_wrap: bool) -> Workflow:
    """Version 1 packs and ships; version 2 also wraps."""
    workflow = Workflow("shipping", version=version, triggers=[manual("ship")])

    @workflow.step
    def pack() -> dict[str, bool]:
        return {"packed": True}

    if gift_wrap:
        wrap = workflow.log("wrap", message="wrapping")
        workflow.chain(pack, wrap, COMPLETE)
    else:
        workflow.chain(pack, COMPLETE)
    return workflow


# One step and done: the tests break its delivery on purpose.
one_step = Workflow("one_step", triggers=[manual("go")])


@one_step.step
def only() -> dict[str, bool]:
    return {"done": True}


one_step.chain(only, COMPLETE)

# Fails its first attempt, then succeeds after a short backoff.
flaky = Workflow("flaky", triggers=[manual("try")])


@flaky.step(retry=Retry(max_attempts=2, backoff=Retry.fixed(0.5)))
def wobble(ctx: StepContext) -> dict[str, Any]:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {"attempt": ctx.attempt}


flaky.chain(wobble, COMPLETE)

# Its retry waits a minute: the job stays delayed during a test.
slow_retry = Workflow("slow_retry", triggers=[manual("try")])


@slow_retry.step(retry=Retry(max_attempts=2, backoff=Retry.fixed(60)))
def fails_once(ctx: StepContext) -> dict[str, Any]:
    if ctx.attempt == 1:
        raise RuntimeError("the provider timed out")
    return {"attempt": ctx.attempt}


slow_retry.chain(fails_once, COMPLETE)

# A saga whose compensation fails: the refund provider is down.
refund_saga = Workflow("refund_saga", triggers=[manual("order")])


@refund_saga.step
def charge() -> dict[str, str]:
    return {"charge_id": "ch-1"}


@charge.compensate
def refund(charge_id: str) -> dict[str, str]:
    raise RuntimeError(f"refund of {charge_id} failed: provider down")


@refund_saga.step
def ship() -> dict[str, bool]:
    raise NonRetryableError("address rejected")


refund_saga.chain(charge, ship, COMPLETE)

WORKFLOWS = (
    saga_checkout.workflow,
    daily_digest.workflow,
    shipping("1", gift_wrap=False),
    shipping("2", gift_wrap=True),
    one_step,
    flaky,
    slow_retry,
    refund_saga,
)


def make_client(clock: Clock | None = None) -> Client:
    """The app on the database queue."""
    return Client(
        os.environ[DB_ENV_VAR], WORKFLOWS, executor=DatabaseExecutor(), observers=(), clock=clock
    )


def inline_client() -> Client:
    """The same app with the in-process executor."""
    return Client(os.environ[DB_ENV_VAR], WORKFLOWS, executor=InlineExecutor(), observers=())
