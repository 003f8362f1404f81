"""An asyncio host: a FastAPI app that starts runs idempotently and awaits their results.

- one :class:`~squidmesh_sdk.AsyncClient` per process, opened and closed by the app's lifespan;
- ``POST /orders`` starts a run; the request's ``Idempotency-Key`` header makes a retried
  request (a client that timed out, a proxy that replayed it) get the same run: 201 the first
  time, 200 after, 409 for another order under a used key;
- ``GET /orders/RUN_ID?wait=SECONDS`` answers when the run finishes (200), or after that long
  with where it is (202): a long poll that holds no thread while it waits.

``python -m samples.fastapi_app`` runs :func:`main`: the app on a temporary SQLite file with a
worker thread, called in-process through httpx's ASGI transport. docs/hosting.md shows this
file's code verbatim; tests/integration/samples/test_fastapi_app.py runs it on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Header, HTTPException, Request, Response
from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    AsyncClient,
    DatabaseExecutor,
    IdempotencyConflict,
    InvalidArgument,
    InvalidRunId,
    Run,
    RunNotFound,
    RunWaitTimeout,
    Worker,
    Workflow,
    manual,
)


class PlaceOrder(BaseModel):
    order_id: str
    amount_cents: int


orders = Workflow("api_orders", triggers=[manual("place", payload=PlaceOrder)])


@orders.step
def reserve_stock(order_id: str) -> dict[str, str]:
    return {"reservation": f"res_{order_id}"}


@orders.step
def charge_card(order_id: str, amount_cents: int) -> dict[str, str]:
    return {"charge": f"ch_{order_id}_{amount_cents}"}


orders.chain(reserve_stock, charge_card, COMPLETE)


def create_app(database: str | None = None, *, with_worker: bool = True) -> FastAPI:
    """The app; ``with_worker`` runs a worker thread in it (in production: `squidmesh worker`)."""
    url = database or os.environ.get("DATABASE_URL", "sqlite:///fastapi_app.db")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncClient(url, [orders], executor=DatabaseExecutor()) as squidmesh:
            await squidmesh.migrate()  # or `squidmesh migrate` at deploy
            app.state.squidmesh = squidmesh
            if not with_worker:
                yield
                return
            with Worker(squidmesh.client, concurrency=2, poll_interval=0.1):
                yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders", status_code=201)
    async def place_order(
        order: PlaceOrder,
        request: Request,
        response: Response,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        squidmesh: AsyncClient = request.app.state.squidmesh
        try:
            handle = await squidmesh.start(orders, order, idempotency_key=idempotency_key)
        except IdempotencyConflict as error:
            raise HTTPException(status_code=409, detail=str(error)) from error
        except InvalidArgument as error:  # a blank or over-long Idempotency-Key
            raise HTTPException(status_code=400, detail=str(error)) from error
        if not handle.created:
            response.status_code = 200  # a retry: the run the first request started
        return {"run_id": handle.id, "status": handle.run.status}

    @app.get("/orders/{run_id}")
    async def order_status(
        run_id: str, request: Request, response: Response, wait: float = 0
    ) -> dict[str, Any]:
        squidmesh: AsyncClient = request.app.state.squidmesh
        try:
            run: Run = await squidmesh.wait_for_run(run_id, timeout=min(max(wait, 0), 30))
        except RunWaitTimeout:
            run = await squidmesh.inspect_run(run_id)
            response.status_code = 202  # not finished yet: ask again
        except (InvalidRunId, RunNotFound) as error:
            raise HTTPException(status_code=404, detail=f"no order run {run_id}") from error
        return {"run_id": run.id, "status": run.status, "context": dict(run.context)}

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app running (its lifespan entered), and an HTTP client that calls it in-process."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        yield http


async def place_and_await(database: str) -> dict[str, Any]:
    """Place an order twice with one key, then await it; return the final GET body."""
    async with serving(create_app(database)) as http:
        order = {"order_id": "o-1", "amount_cents": 1200}
        first = await http.post("/orders", json=order, headers={"Idempotency-Key": "req-1"})
        retry = await http.post("/orders", json=order, headers={"Idempotency-Key": "req-1"})
        print(first.status_code, first.json(), "then", retry.status_code, retry.json())
        done = await http.get(f"/orders/{first.json()['run_id']}", params={"wait": 10})
        print(done.status_code, done.json())
        body: dict[str, Any] = done.json()
        return body


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(place_and_await(f"sqlite:///{Path(directory) / 'fastapi_app.db'}"))


if __name__ == "__main__":
    main()
