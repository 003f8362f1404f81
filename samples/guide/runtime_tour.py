"""docs/runtime.md: start, inspect and list runs."""

from samples.guide.authoring_checkout import checkout
from samples.guide.authoring_triggers import digest
from squidmesh_sdk import Client, Run


def tour(database: str = "sqlite:///squidmesh.db") -> Run:  # or postgresql+psycopg://...
    with Client(database, [checkout, digest]) as client:
        client.migrate()  # create / upgrade the tables (safe to call at every start)
        run = client.start_run(checkout, {"order_id": "o-1", "amount_cents": 1200})
        client.list_runs(workflow=checkout, status="failed", limit=20)
        return client.inspect_run(run.id, include_history=True)  # step runs, attempts, events
