"""samples/inspector_fastapi.py: the inspector mounted in a FastAPI app, beside its routes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from samples import inspector_fastapi, manual_approval
from squidmesh_sdk import Client, InlineExecutor
from tests.ui.conftest import text_of


@pytest.fixture
def host(database_url: str) -> Iterator[tuple[Client, TestClient]]:
    client = Client(
        database_url, [manual_approval.workflow], executor=InlineExecutor(), observers=()
    )
    with (
        client,
        TestClient(inspector_fastapi.create_host_app(client), follow_redirects=False) as http,
    ):
        yield client, http
    inspector_fastapi.SESSIONS.clear()


def test_the_host_mounts_the_inspector_beside_its_own_routes(
    host: tuple[Client, TestClient],
) -> None:
    client, http = host
    started = http.post("/orders", json={"account_id": "cust_8812"})
    assert started.status_code == 202
    run_id = started.json()["run_id"]
    assert started.json()["inspect"] == f"/squidmesh/runs/{run_id}"

    # Nobody signed in to the host: the inspector refuses, the host's own routes still work.
    assert http.get("/squidmesh/runs").status_code == 401
    assert http.get(f"/orders/{run_id}").json() == {"run_id": run_id, "status": "paused"}
    assert "content-security-policy" not in http.get(f"/orders/{run_id}").headers
    assert http.post("/login", json={"user": "alice", "password": "guess"}).status_code == 401

    signed = http.post("/login", json={"user": "alice", "password": USERS_PASSWORD})
    assert signed.status_code == 200
    runs = http.get("/squidmesh/runs")
    assert runs.status_code == 200
    assert "signed in as alice" in text_of(runs.text)
    assert f'href="/squidmesh/runs/{run_id}"' in runs.text  # links stay under the mount
    assert http.get("/squidmesh/static/inspector.css").status_code == 200
    assert http.get("/squidmesh/").headers["location"] == "/squidmesh/runs"

    page = http.get(f"/squidmesh/runs/{run_id}")
    assert "cust_8812" not in page.text  # redacted
    (action,) = re.findall(r'action="(/squidmesh/runs/[^"]+/approve_run)"', page.text)
    csrf = http.cookies.get("squidmesh_csrf")
    assert csrf is not None
    approved = http.post(action, data={"csrf_token": csrf, "comment": "verified by phone"})
    assert approved.status_code == 303
    assert approved.headers["location"] == f"/squidmesh/runs/{run_id}?done=approve_run"
    assert http.get(f"/orders/{run_id}").json()["status"] == "completed"
    history = client.inspect_run(run_id, include_history=True).events or ()
    (event,) = [event for event in history if event.type == "approved"]
    assert (event.type, event.actor, event.comment) == ("approved", "alice", "verified by phone")


USERS_PASSWORD = inspector_fastapi.USERS["alice"]
