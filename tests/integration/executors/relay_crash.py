"""Start a run whose first message is left in the outbox, then kill this process in the relay.

``python -m tests.integration.executors.relay_crash DB_URL BROKER_URL POINT``: POINT is
``before_publish`` (the relay took the message, then died) or ``after_publish`` (the broker
has the message, the relay died before deleting it from the outbox).
"""

from __future__ import annotations

import os
import signal
import sys

from squidmesh_sdk.executors.celery import CeleryExecutor
from squidmesh_sdk.store import outbox as outbox_store
from tests.integration.executors.engines import celery_client


def main(database_url: str, broker_url: str, point: str) -> None:
    client = celery_client(database_url, broker_url, publish_on_commit=False)
    executor = client.executor
    assert isinstance(executor, CeleryExecutor)
    client.start_run("five_steps")
    publish = executor.relay._publish

    def publish_then_die(message: outbox_store.Message) -> None:
        if point == "after_publish":
            publish(message)
        os.kill(os.getpid(), signal.SIGKILL)

    executor.relay._publish = publish_then_die
    executor.relay.relay()
    raise AssertionError("the relay should have been killed")


if __name__ == "__main__":
    main(*sys.argv[1:4])
