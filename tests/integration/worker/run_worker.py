"""Run one worker process: ``python -m tests.integration.worker.run_worker URL LEASE [N] [APP]``.

``N`` is its concurrency (2 by default), ``APP`` the module whose ``make_client(url)`` builds
its client (``tests.integration.worker.app`` by default).
"""

from __future__ import annotations

import importlib
import logging
import sys

from squidmesh_sdk import Worker


def main() -> None:
    url, lease = sys.argv[1], float(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    app = importlib.import_module(
        sys.argv[4] if len(sys.argv) > 4 else "tests.integration.worker.app"
    )
    logging.basicConfig(level=logging.WARNING)
    client = app.make_client(url)
    try:
        Worker(client, concurrency=concurrency, lease=lease, poll_interval=0.1).run(
            install_signal_handlers=True
        )
    finally:
        client.close()


if __name__ == "__main__":
    main()
