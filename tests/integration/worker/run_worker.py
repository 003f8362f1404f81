"""Run one worker process: ``python -m tests.integration.worker.run_worker URL LEASE``."""

from __future__ import annotations

import logging
import sys

from squidmesh_sdk import Worker
from tests.integration.worker.app import make_client


def main() -> None:
    url, lease = sys.argv[1], float(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    logging.basicConfig(level=logging.WARNING)
    client = make_client(url)
    try:
        Worker(client, concurrency=concurrency, lease=lease, poll_interval=0.1).run(
            install_signal_handlers=True
        )
    finally:
        client.close()


if __name__ == "__main__":
    main()
