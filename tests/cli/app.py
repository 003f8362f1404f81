"""The app the CLI tests point ``SQUIDMESH_APP`` at: samples plus a few workflows of our own.

The database comes from ``SQUIDMESH_TEST_APP_DB``, read each time a client is built, so one
imported module serves every test (each with its own database).
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from samples import cancellable_wait, manual_approval, saga_checkout
from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    InlineExecutor,
    NonRetryableError,
    Workflow,
    manual,
)

DB_ENV_VAR = "SQUIDMESH_TEST_APP_DB"

# Paused at a `pause` step until unblocked.
holding = Workflow("holding", triggers=[manual("hold")])
hold = holding.pause("hold", output="hold")
released = holding.log("released", message="released")
holding.chain(hold, released, COMPLETE)

# One irreversible step: replay needs --allow-irreversible.
transfer = Workflow("transfer", triggers=[manual("transfer")])


@transfer.step(irreversible=True)
def send_money() -> dict[str, bool]:
    return {"sent": True}


transfer.chain(send_money, COMPLETE)

# Fails at once.
failing = Workflow("failing", triggers=[manual("go")])


@failing.step
def explode() -> dict[str, bool]:
    raise NonRetryableError("boom")


failing.chain(explode, COMPLETE)

WORKFLOWS = (manual_approval.workflow, cancellable_wait.workflow, holding, transfer, failing)


def make_client() -> Client:
    """The app as operators run it: the database queue, default observers (logging)."""
    return Client(os.environ[DB_ENV_VAR], WORKFLOWS, executor=DatabaseExecutor())


def inline_client() -> Client:
    """An app without the database queue: 'squidmesh worker' refuses it."""
    return Client(os.environ[DB_ENV_VAR], WORKFLOWS, executor=InlineExecutor(), observers=())


def approvals_only() -> Client:
    """An app that no longer registers most workflows (an old deploy's runs remain)."""
    return Client(
        os.environ[DB_ENV_VAR],
        [manual_approval.workflow],
        executor=DatabaseExecutor(),
        observers=(),
    )


def broken_factory() -> Client:
    raise RuntimeError("no database configured\nset DATABASE_URL")


def parent_without_child() -> Client:
    """A client holding a workflow whose child step starts one it is not given."""
    parent = Workflow("parent", triggers=[manual("go")])
    parent.chain(parent.child("ship", workflow="shipping"), COMPLETE)
    return Client(os.environ[DB_ENV_VAR], [parent])


def wrong_factory() -> object:
    return "not a client"


not_a_client = 42


def saga_client() -> Client:
    """An app whose runs retry, fail and compensate: what a worker's console shows."""
    return Client(os.environ[DB_ENV_VAR], [saga_checkout.workflow], executor=DatabaseExecutor())


# Waits for a signal with a payload (runs signal), and fails until told not to (runs retry).
class Paid(BaseModel):
    amount: int


awaiting = Workflow("awaiting", triggers=[manual("go")])
paid = awaiting.signal("paid", payload=Paid, output="payment")
awaiting.chain(paid, COMPLETE)

OUTAGE = {"on": True}
"""While ``on``, ``flaky``'s ``call_partner`` fails: tests of ``runs retry`` turn it off."""

flaky = Workflow("flaky", triggers=[manual("go")])


@flaky.step
def prepare() -> dict[str, bool]:
    return {"prepared": True}


@flaky.step
def call_partner(prepared: bool) -> dict[str, bool]:
    if OUTAGE["on"]:
        raise NonRetryableError("partner down")
    return {"called": prepared}


flaky.chain(prepare, call_partner, COMPLETE)


fanned = Workflow("fanned", triggers=[manual("go")])
"""Two entry steps, both scheduled when a run starts: cancelled before a worker runs them."""


@fanned.step
def left() -> dict[str, bool]:
    return {"left": True}


@fanned.step
def right() -> dict[str, bool]:
    return {"right": True}


def events_client() -> Client:
    """The test app plus the workflows of signals, retries and closing."""
    return Client(
        os.environ[DB_ENV_VAR], (*WORKFLOWS, awaiting, flaky, fanned), executor=DatabaseExecutor()
    )
