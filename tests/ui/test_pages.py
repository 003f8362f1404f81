"""Every page of the inspector, as a signed-in operator sees it, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

from squidmesh_sdk.testing import WorkflowEnvironment
from tests.ui.conftest import Browser, text_of


def run_ids_in(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([0-9a-f-]{36})"', html)


def test_the_runs_page_lists_runs_newest_first_with_their_status(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    paused = env.start_run("manual_approval", {"account_id": "acct_1"})
    env.clock.advance(5)
    failed = env.start_run("saga_checkout", {"order_id": "o-1", "amount_cents": 100})
    page = browser.get("/runs")
    assert page.status_code == 200
    assert run_ids_in(page.text) == [failed.id, paused.id]
    rows = re.findall(r'<tr data-run="[^"]+" data-status="([a-z]+)">', page.text)
    assert rows == ["failed", "paused"]
    assert "saga_checkout" in text_of(page.text)


def test_the_runs_page_filters_by_workflow_status_time_and_id(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    early = env.start_run("manual_approval", {"account_id": "acct_1"})
    env.clock.advance(timedelta(hours=1))
    middle = env.start_run("holding")
    env.clock.advance(timedelta(hours=1))
    late = env.start_run("manual_approval", {"account_id": "acct_2"})
    env.client.approve_run(late.id, actor="ops")

    assert run_ids_in(browser.get("/runs?workflow=manual_approval").text) == [late.id, early.id]
    assert run_ids_in(browser.get("/runs?status=paused").text) == [middle.id, early.id]
    by_status = browser.get("/runs?workflow=manual_approval&status=completed")
    assert run_ids_in(by_status.text) == [late.id]
    since = (middle.inserted_at - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    until = (middle.inserted_at + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    assert run_ids_in(browser.get(f"/runs?since={since}&until={until}").text) == [middle.id]
    found = browser.get(f"/runs?id={early.id}")
    assert found.status_code == 303
    assert found.headers["location"] == f"/runs/{early.id}"


def test_the_runs_page_reports_bad_filters_instead_of_failing(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    env.start_run("holding")
    page = browser.get("/runs?status=sleeping&since=yesterday&id=not-a-uuid")
    assert page.status_code == 400
    text = text_of(page.text)
    assert "unknown status 'sleeping'" in text
    assert "since: 'yesterday' is not a date and time" in text
    assert "'not-a-uuid' is not a run id" in text
    missing = browser.get("/runs?id=01a2495a-0000-7000-8000-000000000000")
    assert "no run has the id 01a2495a-0000-7000-8000-000000000000" in text_of(missing.text)
    refused = browser.get("/runs?workflow=%00")  # the client refuses the name: was a 500
    assert refused.status_code == 400
    assert "workflow:" in text_of(refused.text)


def test_the_runs_page_pages_by_keyset_without_gaps_or_repeats(env: WorkflowEnvironment) -> None:
    from squidmesh_sdk.ui import create_app
    from tests.ui.conftest import TOKENS

    started = []
    for _ in range(5):
        started.append(env.start_run("holding").id)
        env.clock.advance(1)
    paged = Browser(create_app(env.client, token=TOKENS, page_size=2))
    paged.sign_in()
    seen: list[str] = []
    url = "/runs?workflow=holding"
    pages = 0
    while url:
        page = paged.get(url)
        seen += run_ids_in(page.text)
        older = re.search(r'href="([^"]+)" id="older"', page.text)
        url = older.group(1).replace("&amp;", "&") if older else ""
        pages += 1
        if pages > 1:
            assert 'id="newest"' in page.text
    assert pages == 3
    assert seen == list(reversed(started))
    assert "after=" in paged.get("/runs?workflow=holding").text  # the link to page 2
    paged.close()


def test_the_live_refresh_gets_only_the_table_rows(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run = env.start_run("holding")
    rows = browser.get("/runs", headers={"X-Squidmesh-Fragment": "rows"})
    assert rows.status_code == 200
    assert "<html" not in rows.text
    assert run_ids_in(rows.text) == [run.id]
    page = browser.get("/runs")
    assert 'id="runs-rows" data-live="5.0"' in page.text
    status = browser.get(f"/runs/{run.id}/status")
    assert status.json() == {
        "id": run.id,
        "status": "paused",
        "current_step": "hold",
        "updated_at": status.json()["updated_at"],
    }
    assert browser.get("/runs/01a2495a-0000-7000-8000-000000000000/status").status_code == 404


def test_a_run_waiting_for_approval_shows_why_and_what_to_do(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run = env.start_run("manual_approval", {"account_id": "acct_1"})
    page = browser.get(f"/runs/{run.id}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "paused for approval at wait_for_approval" in text
    actions = re.findall(r'data-action="([a-z_]+)"', page.text)
    assert actions == ["approve_run", "reject_run", "cancel_run"]
    # The graph: the approval step waits (paused, current), its two routes are labelled.
    assert re.search(
        r'<g class="node k-approval st-paused current" data-step="wait_for_approval"', page.text
    )
    assert 'data-step="record_approval" data-status="waiting"' in page.text
    assert ">approved</text>" in page.text
    assert ">rejected</text>" in page.text
    assert "flowchart TD" in page.text  # the Mermaid text beside it
    # The audit trail has the pause; the trace id links through the template.
    assert re.search(r'<tr data-event="paused">', page.text)
    trace = run.trace_context["traceparent"].split("-")[1] if run.trace_context else ""
    assert f'href="https://tempo.example/trace/{trace}"' in page.text


def test_a_failed_saga_shows_attempts_errors_and_compensation(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run = env.start_run("saga_checkout", {"order_id": "o-9", "amount_cents": 500})
    env.run_until_idle()
    page = browser.get(f"/runs/{run.id}")
    text = text_of(page.text)
    assert "retry exhausted at capture_payment" in text
    attempts = re.findall(r'<tr data-step="([a-z_]+)" data-attempt="(\d)">', page.text)
    assert sorted(attempts) == [
        ("authorize_payment", "1"),
        ("capture_payment", "1"),
        ("capture_payment", "2"),
        ("reserve_inventory", "1"),
    ]
    assert text.count("PaymentDeclinedError: capture declined for auth_o-9") >= 2
    compensation = page.text.split('id="compensation"')[1].split("</section>")[0]
    assert "samples.saga_checkout.release_inventory" in compensation
    assert "samples.saga_checkout.void_payment_authorization" in compensation
    assert compensation.count("st-completed") == 2
    assert re.findall(r'data-action="([a-z_]+)"', page.text) == ["replay_run"]
    assert 'class="node k-function st-failed" data-step="capture_payment"' in page.text


def test_the_timeline_shows_retry_delays(env: WorkflowEnvironment, browser: Browser) -> None:
    run = env.start_run("flaky")
    env.run_until_idle()
    page = browser.get(f"/runs/{run.id}")
    text = text_of(page.text)
    assert "completed" in text
    assert text.count("30.0 s (retry delay)") == 2
    assert "ConnectionError: partner unreachable (attempt 1)" in text
    assert "3 attempts" in page.text  # on the graph's node
    assert page.text.count('<rect class="bar st-failed"') == 2
    assert page.text.count('<rect class="bar st-completed"') == 1


def test_a_dependency_run_draws_its_joins_taken(env: WorkflowEnvironment, browser: Browser) -> None:
    run = env.start_run("dependency_recovery", {"account_id": "a", "invoice_id": "i"})
    page = browser.get(f"/runs/{run.id}")
    taken = re.findall(
        r'<path class="edge k-after taken"[^>]*data-source="([a-z_]+)" data-target="([a-z_]+)"',
        page.text,
    )
    assert sorted(taken) == [
        ("load_account", "prepare_notification"),
        ("load_invoice", "prepare_notification"),
    ]


def test_an_unknown_run_is_a_404_page(browser: Browser) -> None:
    missing = browser.get("/runs/01a2495a-0000-7000-8000-000000000000")
    assert missing.status_code == 404
    assert "Not found" in missing.text
    assert browser.get("/runs/nope").status_code == 404


def test_the_workflows_page_lists_versions_triggers_and_next_cron_firing(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    page = browser.get("/workflows")
    assert page.status_code == 200
    names = re.findall(r'<tr data-workflow="([a-z_]+)">', page.text)
    assert names == sorted(env.client.workflows)
    digest = page.text.split('data-workflow="daily_digest"')[1].split("</tr>")[0]
    # The fake clock is at 2026-01-01 09:00 UTC: the 08:00 cron fires next the day after.
    assert "daily_digest: 2026-01-02 08:00:00 UTC" in text_of(digest)
    assert env.client.workflows["daily_digest"].version in digest


def test_a_workflow_page_shows_its_graph_steps_triggers_and_schedule(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    page = browser.get("/workflows/daily_digest")
    assert page.status_code == 200
    assert '<svg class="graph"' in page.text
    assert re.findall(r'<tr data-trigger="([a-z_]+)">', page.text) == [
        "manual_digest",
        "daily_digest",
        "daily_digest",  # and again under the cron schedules
    ]
    fires = page.text.split('class="small next-fires">')[1].split("</td>")[0].split("<br>")
    assert fires == [f"2026-01-0{day} 08:00:00 UTC" for day in (2, 3, 4, 5, 6)]
    assert "none yet" in page.text  # no worker handled a window
    saga = browser.get("/workflows/saga_checkout")
    assert "samples.saga_checkout.capture_payment" in saga.text
    assert browser.get("/workflows/nope").status_code == 404
    assert browser.get("/workflows/saga_checkout?version=v9").status_code == 404


def test_the_jobs_page_says_when_the_executor_keeps_no_jobs(browser: Browser) -> None:
    page = browser.get("/jobs")
    assert page.status_code == 200
    assert "delivers work with TestExecutor, which keeps no jobs in the database" in text_of(
        page.text
    )
