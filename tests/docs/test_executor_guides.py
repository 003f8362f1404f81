"""The commands and modules of docs/executors.md, run for real: Celery and Procrastinate CLIs."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from squidmesh_sdk import Client
from tests.integration.worker.conftest import wait_until
from tools.redisserver import RedisServer

ROOT = Path(__file__).parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"


def _command(*args: str) -> list[str]:
    found = BIN / args[0]
    return [str(found) if found.exists() else args[0], *args[1:]]


def _run(env: dict[str, str], *args: str) -> None:
    subprocess.run(_command(*args), cwd=ROOT, env=env, check=True, timeout=120)


def _load(name: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for key in ("DATABASE_URL", "CELERY_BROKER_URL"):
        if key in env:
            monkeypatch.setenv(key, env[key])
    return importlib.reload(importlib.import_module(name))


@pytest.fixture
def stop_at_exit() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _signup_completes(client: Client) -> None:
    run = client.start_run("onboarding", {"email": "ada@example.com"})
    wait_until(lambda: client.inspect_run(run.id).terminal, what="the run to finish")
    done = client.inspect_run(run.id)
    assert done.status == "completed"
    assert done.context["welcome_email"] == "sent to ada@example.com for acct_ada"


def test_the_celery_guide_runs_a_workflow_on_a_celery_worker(
    redis: RedisServer,
    stop_at_exit: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path}/shop.db",
        "CELERY_BROKER_URL": redis.url,
    }
    _run(env, "squidmesh", "--app", "samples.guide.executors_celery:client", "migrate")
    with (tmp_path / "celery.log").open("wb") as log:
        # The guide's command, with the default prefork pool: two children forked from it.
        stop_at_exit.append(
            subprocess.Popen(
                _command(
                    *("celery", "-A", "samples.guide.executors_celery", "worker"),
                    *("--queues", "squidmesh", "--concurrency", "2"),
                ),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    module = _load("samples.guide.executors_celery", env, monkeypatch)
    try:
        _signup_completes(module.client)
    finally:
        module.client.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_the_procrastinate_guide_runs_a_workflow_on_a_procrastinate_worker(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    stop_at_exit: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url}
    app = "samples.guide.executors_procrastinate.procrastinate_app"
    _run(env, "procrastinate", "--app", app, "schema", "--apply")
    _run(env, "squidmesh", "--app", "samples.guide.executors_procrastinate:client", "migrate")
    with (tmp_path / "procrastinate.log").open("wb") as log:
        stop_at_exit.append(
            subprocess.Popen(
                _command("procrastinate", "--app", app, "worker"),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    module = _load("samples.guide.executors_procrastinate", env, monkeypatch)
    try:
        _signup_completes(module.client)
    finally:
        module.client.close()
