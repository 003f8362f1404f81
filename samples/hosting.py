"""Host integration without a framework: the pattern a Flask, Django or FastAPI app follows.

- one shared :class:`~squidmesh_sdk.Client` per process (:func:`get_client`);
- request handlers start and inspect runs (:func:`start_order`, :func:`order_status`, wired to
  a plain WSGI :func:`application`);
- a transaction step writes to the app's own ``orders`` table, in the app's database;
- workers run as a separate process: ``squidmesh --app samples.hosting:client worker``.

``python -m samples.hosting`` runs :func:`main`: it plays a deploy on a temporary SQLite file
(migrate, a worker, two HTTP requests through the WSGI app) and prints what the client saw.
docs/hosting.md shows this file's code verbatim, and tests/docs/test_docs_code.py keeps it so.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment
from wsgiref.util import setup_testing_defaults

import sqlalchemy as sa
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    Client,
    DatabaseExecutor,
    InvalidPayload,
    InvalidRunId,
    Retry,
    RunNotFound,
    StepContext,
    Worker,
    Workflow,
    manual,
)
from squidmesh_sdk.store import job_admin

metadata = sa.MetaData()  # the app's own tables, in the same database as squidmesh's
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("amount_cents", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
)


class PlaceOrder(BaseModel):
    order_id: str
    amount_cents: int


fulfilment = Workflow("fulfilment", triggers=[manual("place_order", payload=PlaceOrder)])


@fulfilment.step(transaction=True)  # the body's writes commit with the step's result
def record_order(order_id: str, amount_cents: int, ctx: StepContext) -> dict[str, str]:
    assert ctx.connection is not None  # the runtime's connection to the app database
    row = {"id": order_id, "amount_cents": amount_cents, "status": "accepted"}
    ctx.connection.execute(orders.insert(), row)
    return {"order_status": "accepted"}


@fulfilment.step(retry=Retry(max_attempts=5, backoff=Retry.exponential(min=1, max=60)))
def notify_warehouse(order_id: str) -> dict[str, str]:
    return {"warehouse_ticket": f"wh_{order_id}"}


fulfilment.chain(record_order, notify_warehouse, COMPLETE)


@functools.cache
def get_client() -> Client:
    """The process's one Client: created on first use, shared by every request thread."""
    database = os.environ.get("DATABASE_URL", "sqlite:///hosting.db")
    return Client(database, [fulfilment], executor=DatabaseExecutor())


client = get_client  # `squidmesh --app samples.hosting:client worker` calls it


def start_order(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /orders: start a run and answer at once; a worker does the work."""
    try:
        run = get_client().start_run(fulfilment, body)
    except InvalidPayload as error:
        return 422, {"error": str(error)}
    return 202, {"run_id": run.id, "status": run.status}


def order_status(run_id: str) -> tuple[int, dict[str, Any]]:
    """GET /orders/RUN_ID: where the run is."""
    try:
        run = get_client().inspect_run(run_id)
    except (InvalidRunId, RunNotFound):
        return 404, {"error": f"no order run {run_id}"}
    return 200, {"run_id": run.id, "status": run.status, "context": dict(run.context)}


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI app (gunicorn samples.hosting:application) routing to the two handlers."""
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if method == "POST" and path == "/orders":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        status, body = start_order(json.loads(environ["wsgi.input"].read(size) or b"{}"))
    elif method == "GET" and path.startswith("/orders/"):
        status, body = order_status(path.removeprefix("/orders/"))
    else:
        status, body = 404, {"error": "not found"}
    headers = [("Content-Type", "application/json")]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [json.dumps(body).encode()]


def worker_main() -> None:
    """The worker process: what `squidmesh --app samples.hosting:client worker` runs."""
    Worker(get_client(), concurrency=8).run(install_signal_handlers=True)


def queue_depth() -> dict[str, int]:
    """Jobs per status (queued, running, failed): what to graph and alert on."""
    with get_client().database.read() as connection:  # one read-only snapshot
        return job_admin.count_by_status(connection)


def request(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[str, Any]:
    """Call :func:`application` the way a WSGI server would; return status line and JSON."""
    data = json.dumps(body).encode() if body is not None else b""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    setup_testing_defaults(environ)
    answer: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], Any]:
        answer.append(status)
        return lambda _data: None

    chunks = application(environ, start_response)
    return answer[0], json.loads(b"".join(chunks))


def main() -> dict[str, Any]:
    """Play a deploy on a temporary database; return the final GET /orders/RUN_ID body."""
    previous = os.environ.get("DATABASE_URL")
    with tempfile.TemporaryDirectory() as directory:
        os.environ["DATABASE_URL"] = f"sqlite:///{Path(directory) / 'hosting.db'}"
        try:
            app_client = get_client()
            app_client.migrate()  # at deploy: `squidmesh --app samples.hosting:client migrate`
            metadata.create_all(app_client.database.engine)  # the app's own migrations
            print(*request("POST", "/orders", {"order_id": "o-1"}))  # 422: no amount_cents
            # The Worker thread stands in for the separate worker process.
            with Worker(app_client, concurrency=2, poll_interval=0.1):
                status, started = request(
                    "POST", "/orders", {"order_id": "o-1", "amount_cents": 1200}
                )
                print(status, started)
                body: dict[str, Any] = {"status": "pending"}
                while body["status"] not in {"completed", "failed", "cancelled"}:
                    time.sleep(0.1)
                    status, body = request("GET", f"/orders/{started['run_id']}")
                print(status, body)
            print("queue depth:", queue_depth())  # {} once every job is done
            with app_client.database.engine.connect() as connection:
                print("orders:", connection.execute(sa.select(orders)).all())
            return body
        finally:
            get_client().close()
            get_client.cache_clear()
            if previous is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = previous


if __name__ == "__main__":
    main()
