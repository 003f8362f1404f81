"""One benchmark worker process: ``python -m benchmarks.worker URL CONCURRENCY``.

It builds the same client as the benchmark, prints ``ready`` once it is set up, waits for a
line on stdin (the start signal, so that process start-up is not timed), then runs a
:class:`~squidmesh_sdk.Worker` until SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys

from benchmarks.workflows import POLL_INTERVAL, make_client
from squidmesh_sdk import Worker


def main(argv: list[str] | None = None) -> int:
    """Run one worker process; return its exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m benchmarks.worker URL CONCURRENCY", file=sys.stderr)
        return 2
    url, concurrency = args[0], int(args[1])
    logging.basicConfig(level=logging.WARNING)
    client = make_client(url)
    try:
        # SQUIDMESH_BENCH_GROUP_COMMIT=0: compare with one transaction per outcome.
        grouped = os.environ.get("SQUIDMESH_BENCH_GROUP_COMMIT", "1") != "0"
        worker = Worker(
            client, concurrency=concurrency, poll_interval=POLL_INTERVAL, group_commit=grouped
        )
        print("ready", flush=True)
        sys.stdin.readline()
        worker.run(install_signal_handlers=True)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
