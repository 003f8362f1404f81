"""A FastAPI application that mounts the run inspector beside its own routes.

- The host's routes: ``POST /orders`` starts an approval run, ``GET /orders/{run_id}`` reads
  it, ``POST /login`` is the host's own sign-in (a stand-in for yours: it sets a session
  cookie).
- The inspector at ``/squidmesh``: its auth hook asks the host who is signed in, so every
  approval, rejection, cancellation or replay is recorded under that user; anyone else gets
  401. Customer ids are redacted on its pages.

Run it with the ``ui`` extra and FastAPI installed::

    DATABASE_URL=sqlite:///inspector.db uvicorn --factory samples.inspector_fastapi:from_env

docs/inspector.md shows this file's code verbatim; tests/ui/test_fastapi_sample.py drives it.
"""

from __future__ import annotations

import hmac
import os
import secrets

from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

from samples import manual_approval
from squidmesh_sdk import Client, InvalidRunId, RunNotFound
from squidmesh_sdk.ui import create_app, redact_keys

# The host's users and sessions. A real application has its own; the inspector only needs
# to be told, per request, who is asking.
USERS = {"alice": "correct horse battery staple"}
SESSIONS: dict[str, str] = {}


class Credentials(BaseModel):
    user: str
    password: str


class Order(BaseModel):
    account_id: str


def current_operator(request: Request) -> str | None:
    """The inspector's auth hook: the signed-in user, or None (the inspector answers 401)."""
    return SESSIONS.get(request.cookies.get("host_session", ""))


def create_host_app(client: Client) -> FastAPI:
    """The host application: its own routes, and the inspector mounted at /squidmesh."""
    app = FastAPI()

    @app.post("/login")
    def login(credentials: Credentials, response: Response) -> dict[str, str]:
        expected = USERS.get(credentials.user, "")
        if not expected or not hmac.compare_digest(expected, credentials.password):
            raise HTTPException(status_code=401, detail="wrong user or password")
        session = secrets.token_urlsafe(32)
        SESSIONS[session] = credentials.user
        response.set_cookie("host_session", session, httponly=True, samesite="lax")
        return {"user": credentials.user}

    @app.post("/orders", status_code=202)
    def start_order(order: Order) -> dict[str, str]:
        run = client.start_run(manual_approval.workflow, order.model_dump())
        return {"run_id": run.id, "inspect": f"/squidmesh/runs/{run.id}"}

    @app.get("/orders/{run_id}")
    def order_status(run_id: str) -> dict[str, str]:
        try:
            run = client.inspect_run(run_id)
        except (InvalidRunId, RunNotFound):
            raise HTTPException(status_code=404, detail="no such order") from None
        return {"run_id": run.id, "status": run.status}

    app.mount(
        "/squidmesh",
        create_app(client, auth=current_operator, redact=redact_keys("account_id")),
    )
    return app


def from_env() -> FastAPI:
    """``uvicorn --factory samples.inspector_fastapi:from_env``: the app on ``DATABASE_URL``."""
    client = Client(
        os.environ.get("DATABASE_URL", "sqlite:///inspector.db"), [manual_approval.workflow]
    )
    client.migrate()
    return create_host_app(client)
