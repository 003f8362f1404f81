"""A process that starts a run beside its own idle worker, then waits to be killed.

``python -m tests.integration.worker.start_beside_worker URL LEASE GATE STARTED``: a worker of
one thread, idle after a warm-up run; then a ``gated_first`` run started in this process, so
that the start's transaction leases its first job to the worker's thread and starts the step
there (see ``DatabaseExecutor.starting``). Prints ``handed RUN_ID`` when the start did hand it
over (``queued RUN_ID`` when it did not), and keeps running the blocked step until killed.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from squidmesh_sdk import Worker
from tests.integration.worker.app import make_client


def main() -> None:
    url, lease, gate, started = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    logging.basicConfig(level=logging.WARNING)
    client = make_client(url)
    worker = Worker(client, concurrency=1, lease=lease, poll_interval=60)
    offers: list[bool] = []
    offer_start = worker.offer_start

    def recording(runtime: object, queue: str) -> object:
        reserved = offer_start(runtime, queue)
        offers.append(reserved is not None)
        return reserved

    worker.offer_start = recording  # type: ignore[assignment,method-assign]
    worker.start()
    warm_up = client.start_run("five_steps")
    client.wait_for_run(warm_up.id, timeout=30)
    # The run's end is reported before its thread is free again: wait for the worker to be
    # idle, as a start would find it a moment later in a real app.
    deadline = time.monotonic() + 10
    while not worker._threads._idle and time.monotonic() < deadline:
        time.sleep(0.01)
    offers.clear()
    run = client.start_run("gated_first", {"gate": gate, "started": started})
    sys.stdout.write(f"{'handed' if offers == [True] else 'queued'} {run.id}\n")
    sys.stdout.flush()
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
