"""docs/workers.md: a worker process."""

import sys

from samples.guide.authoring_checkout import checkout
from squidmesh_sdk import Client, DatabaseExecutor, Worker


def serve(database: str) -> None:  # e.g. "postgresql+psycopg://app@db/app"
    client = Client(database, [checkout], executor=DatabaseExecutor())
    client.migrate()
    Worker(client, queues=["default"], concurrency=8).run(install_signal_handlers=True)


if __name__ == "__main__":
    serve(sys.argv[1])
