"""The workflow the executor span-tree tests trace: a retry, an approval, a wait and a log.

``reserve`` -> ``charge`` (fails its first attempt, retried 0.2 s later) -> ``approval`` (a
human gate) -> ``settle`` (a 0.1 s wait step) -> ``note`` (a log step) -> ``ship`` -> done.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, Retry, StepContext, Workflow, manual

SECRET = "zq-secret-4417"  # noqa: S105 - a payload value quoted by an error message


class Order(BaseModel):
    order_id: str


def traced() -> Workflow:
    wf = Workflow("traced", triggers=[manual("order", payload=Order)])

    @wf.step
    def reserve(order_id: str) -> dict[str, Any]:
        return {"reservation": f"r-{order_id}"}

    @wf.step(retry=Retry(max_attempts=3, backoff=Retry.fixed(0.2)))
    def charge(order_id: str, ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise ConnectionError(f"gateway timed out charging {order_id}")
        return {"charge": f"c-{order_id}"}

    approval = wf.approval("approval", output="approval")
    settle = wf.wait("settle", duration=0.1)
    note = wf.log("note", message="charged and approved")

    @wf.step
    def ship(reservation: str) -> dict[str, Any]:
        return {"shipment": f"s-{reservation}"}

    @wf.step
    def refuse() -> dict[str, Any]:
        return {"refused": True}

    wf.chain(reserve, charge, approval)
    wf.transition(approval, on="ok", to=settle)
    wf.transition(approval, on="error", to=refuse)
    wf.chain(settle, note, ship, COMPLETE)
    wf.chain(refuse, COMPLETE)
    return wf


WORKFLOWS = (traced(),)


BROKER_ENV = "SQUIDMESH_TEST_TRACED_BROKER"
"""When set (a Redis URL), :func:`make_client` sends work through Celery on that broker."""


def make_client(url: str) -> Client:
    """A client on ``url`` that queues work in the database (or on Celery: ``BROKER_ENV``)."""
    broker = os.environ.get(BROKER_ENV)
    if broker:
        return make_celery_client(url, broker)
    return Client(url, WORKFLOWS, executor=DatabaseExecutor())


def make_celery_client(url: str, broker: str) -> Client:
    """A client on ``url`` whose work goes through Celery (its outbox) on ``broker``."""
    # Imported here: the database-queue tests need neither Celery nor the engines' module.
    from squidmesh_sdk.executors.celery import CeleryExecutor
    from tests.integration.executors.engines import QUEUE, celery_app

    # A short relay interval: the retry's and the wait's delayed messages go out quickly.
    executor = CeleryExecutor(celery_app(broker), queue=QUEUE, relay_interval=0.1)
    return Client(url, WORKFLOWS, executor=executor)
