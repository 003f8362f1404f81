"""Fixtures of the inspector tests: the test application on this test's database, and a
browser-like HTTP client (Starlette's TestClient) that signs in and submits forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from squidmesh_sdk.testing import WorkflowEnvironment
from squidmesh_sdk.ui import create_app
from tests.ui.workflows import WORKFLOWS

ALICE_TOKEN = "alice-token-0123456789"  # noqa: S105 - test tokens
BOB_TOKEN = "bob-token-0123456789ab"  # noqa: S105
ALICE = {"name": "alice", "email": "alice@example.com"}
TOKENS: dict[str, Any] = {ALICE_TOKEN: ALICE, BOB_TOKEN: "bob"}


class Browser:
    """A TestClient that keeps cookies, signs in and sends forms with their CSRF token."""

    def __init__(self, app: Starlette, **options: Any) -> None:
        self.http = TestClient(app, follow_redirects=False, **options)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **options: Any) -> Any:
        return self.http.get(path, **options)

    def csrf(self) -> str:
        """The CSRF token the inspector gave this browser (visiting a page first if needed)."""
        token = self.http.cookies.get("squidmesh_csrf")
        if token is None:
            page = self.http.get("/login")
            found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert found is not None, page.text
            token = found.group(1)
        return token

    def sign_in(self, token: str = ALICE_TOKEN) -> Any:
        response = self.post("/login", {"token": token, "next": "/runs"})
        assert response.status_code == 303, response.text
        return response

    def post(self, path: str, form: dict[str, str] | None = None, **options: Any) -> Any:
        """Submit a form as the inspector's own page would: with the CSRF token."""
        data = {"csrf_token": self.csrf(), **(form or {})}
        return self.http.post(path, data=data, **options)

    def act(self, run_id: str, action: str, form: dict[str, str] | None = None) -> Any:
        return self.post(f"/runs/{run_id}/actions/{action}", form)


@pytest.fixture
def env(database_url: str) -> Iterator[WorkflowEnvironment]:
    """The test workflows on this test's database: in-process executor, fake clock."""
    with WorkflowEnvironment(WORKFLOWS, database=database_url) as environment:
        yield environment


@pytest.fixture
def browser(env: WorkflowEnvironment) -> Iterator[Browser]:
    """Alice, signed in with her token to an inspector with actions on."""
    app = create_app(env.client, token=TOKENS, trace_url="https://tempo.example/trace/{trace_id}")
    signed_in = Browser(app)
    signed_in.sign_in()
    yield signed_in
    signed_in.close()


def text_of(html: str) -> str:
    """The page's text: tags dropped, whitespace collapsed (what a person reads)."""
    without_tags = re.sub(r"<[^>]+>", " ", html)
    return " ".join(unescape(without_tags).split())
