"""``squidmesh ui``: refuses to serve others without authentication, serves the inspector."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from squidmesh_sdk.cli import EXIT_USAGE, main
from squidmesh_sdk.cli.app import APP_ENV_VAR
from tests.cli.app import DB_ENV_VAR, make_client

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.cli.app:make_client"
NOT_CALLABLE = 42


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(APP_ENV_VAR, raising=False)
    monkeypatch.delenv("SQUIDMESH_UI_TOKEN", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_serving_beyond_this_machine_needs_authentication(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--app", APP, "ui", "--host", "0.0.0.0"]) == EXIT_USAGE  # noqa: S104
    err = capsys.readouterr().err
    assert err == (
        "squidmesh: error: serving the inspector on 0.0.0.0 (not a loopback address) needs "
        "authentication: pass --auth module:callable or set SQUIDMESH_UI_TOKEN\n"
    )
    assert main(["--app", APP, "ui", "--auth", "tests.ui.test_cli:NOT_CALLABLE"]) == EXIT_USAGE
    assert "is a int, not a callable" in capsys.readouterr().err
    assert main(["--app", APP, "ui", "--port", "70000"]) == EXIT_USAGE
    assert "'70000' is not a port" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(database_url: str, *extra: str, token: str | None = None) -> Iterator[str]:
    """``squidmesh ui`` in a subprocess; yields its base URL once it answers."""
    port = _free_port()
    env = {**os.environ, DB_ENV_VAR: database_url}
    if token is not None:
        env["SQUIDMESH_UI_TOKEN"] = token
    command = [sys.executable, "-m", "squidmesh_sdk.cli", "--app", APP, "ui", "--port", str(port)]
    process = subprocess.Popen(
        [*command, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/static/inspector.css", timeout=2):  # noqa: S310
                    break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    _, err = process.communicate(timeout=5)
                    pytest.fail(f"squidmesh ui did not start: {err}")
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert f"inspector on http://127.0.0.1:{port}/" in err


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_squidmesh_ui_serves_the_inspector_read_only_on_loopback(database_url: str) -> None:
    os.environ[DB_ENV_VAR] = database_url
    try:
        with make_client() as client:
            run = client.start_run("holding")
    finally:
        del os.environ[DB_ENV_VAR]
    with serving(database_url) as base:
        with urllib.request.urlopen(f"{base}/runs", timeout=10) as response:  # noqa: S310
            page = response.read().decode()
        assert run.id in page
        assert "read-only" in page
        with urllib.request.urlopen(f"{base}/runs/{run.id}", timeout=10) as response:  # noqa: S310
            assert "data-action=" not in response.read().decode()


def test_squidmesh_ui_with_a_token_asks_to_sign_in(database_url: str) -> None:
    with serving(database_url, token="a-token-from-the-environment") as base:  # noqa: S106
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirected:
            opener.open(f"{base}/runs", timeout=10)
        assert redirected.value.code == 303
        assert redirected.value.headers["location"] == "/login?next=%2Fruns"
        redirected.value.close()
