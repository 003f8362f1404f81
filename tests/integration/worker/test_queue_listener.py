"""PostgreSQL: an idle worker is woken by ``NOTIFY`` as soon as work is committed."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from squidmesh_sdk import Client, Database, DatabaseExecutor, Worker
from tests.integration.worker.app import WORKFLOWS, make_client
from tests.integration.worker.conftest import wait_until

pytestmark = pytest.mark.postgres


def _listening(client: Client) -> bool:
    with client.database.read() as connection:
        return bool(
            connection.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = 'LISTEN squidmesh_jobs'"
                )
            )
        )


def test_a_worker_on_an_engine_with_connect_arguments_is_woken_at_once(
    postgres_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The host's engine names its server in connect_args, not in its URL: the listener
    # connected from the URL alone, failed without a word, and the worker only polled.
    url = sa.make_url(postgres_database_url)
    engine = sa.create_engine(
        "postgresql+psycopg://",
        connect_args={
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password or "",
            "dbname": url.database,
        },
    )
    try:
        with (
            caplog.at_level(logging.WARNING),
            Client(Database(engine), WORKFLOWS, executor=DatabaseExecutor()) as client,
            Worker(client, concurrency=1, poll_interval=60),
        ):
            wait_until(lambda: _listening(client), timeout=10, what="the worker to listen")
            # Started by another client: only the notification can wake the idle worker.
            with make_client(postgres_database_url) as other:
                run = other.start_run("one_step")
                finished = other.wait_for_run(run.id, timeout=20)
        assert finished.status == "completed"
        assert "queue listener" not in caplog.text
    finally:
        engine.dispose()
