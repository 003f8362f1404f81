"""One worker process of the flow-control tests: ``python -m ... URL LEASE CONCURRENCY``."""

from __future__ import annotations

import logging
import sys

from squidmesh_sdk import Worker
from tests.integration.flow.app import make_client


def main() -> None:
    url, lease, concurrency = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
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
