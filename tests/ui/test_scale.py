"""The Runs page on 100,000 stored runs answers in under 300 ms, on SQLite and PostgreSQL.

The runs are inserted directly (one multi-row statement per batch), spread over 100 days,
five workflows and every status. Each page is fetched five times through the whole app
(authentication, the client's keyset query, templates); the median must stay under the
budget. The figures are printed for the record.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from squidmesh_sdk import Client, InlineExecutor
from squidmesh_sdk.store.schema import runs
from squidmesh_sdk.ui import create_app
from tests.ui.conftest import TOKENS, Browser
from tests.ui.workflows import WORKFLOWS

RUNS = 100_000
BUDGET_MS = 300.0
START = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = ["completed"] * 90 + ["failed"] * 5 + ["running"] * 4 + ["paused"]
NAMES = ["manual_approval", "saga_checkout", "holding", "flaky", "transfer"]


def _rows(start: int, count: int) -> list[dict[str, Any]]:
    rows = []
    for index in range(start, start + count):
        at = START + timedelta(seconds=index * 86.4)  # 100 days
        rows.append(
            {
                "id": uuid.uuid4(),
                "workflow": NAMES[index % len(NAMES)],
                "trigger": "go",
                "status": STATUSES[(index * 7) % len(STATUSES)],
                "payload": {"order_id": f"o-{index}"},
                "context": {"step": index},
                "current_step": None,
                "last_error": None,
                "replayed_from_run_id": None,
                "definition_fingerprint": "sha256:bench",
                "definition_version": "v1",
                "idempotency_key": None,
                "trace_context": None,
                "inserted_at": at,
                "updated_at": at,
            }
        )
    return rows


def _fill(client: Client) -> None:
    batch = 5_000
    for start in range(0, RUNS, batch):
        with client.database.engine.begin() as connection:
            connection.execute(runs.insert(), _rows(start, batch))
    with client.database.engine.begin() as connection:
        connection.exec_driver_sql(
            "ANALYZE" if client.database.dialect == "sqlite" else "ANALYZE squidmesh_runs"
        )


def _median_ms(browser: Browser, url: str) -> float:
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        page = browser.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert page.status_code == 200, url
        assert page.text.count("<tr data-run=") == 50, url
    return statistics.median(timings)


def test_the_runs_page_answers_within_300_ms_on_100k_runs(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(database_url, WORKFLOWS, executor=InlineExecutor(), observers=()) as client:
        _fill(client)
        browser = Browser(create_app(client, token=TOKENS))
        browser.sign_in()
        deep = client.list_runs(limit=1, until=START + timedelta(days=50))[0].id
        pages = {
            "newest": "/runs",
            "workflow": "/runs?workflow=saga_checkout",
            "status=paused (1%)": "/runs?status=paused",
            "workflow+status": "/runs?workflow=holding&status=failed",
            "time range": "/runs?since=2026-02-01T00:00&until=2026-02-10T00:00",
            "deep page (after=)": f"/runs?after={deep}",
            "deep page, filtered": f"/runs?status=completed&after={deep}",
        }
        figures = {name: _median_ms(browser, url) for name, url in pages.items()}
        browser.close()
    with capsys.disabled():
        dialect = database_url.split(":", 1)[0]
        sys.stdout.write(f"\nRuns page on {RUNS:,} runs ({dialect}), median of 5:\n")
        for name, ms in figures.items():
            sys.stdout.write(f"  {name:<22} {ms:6.1f} ms\n")
    slow = {name: ms for name, ms in figures.items() if ms >= BUDGET_MS}
    assert slow == {}
