"""The inspector in a real browser: headless Chromium (Debian's) driven by Selenium.

An operator signs in, opens the runs page, opens a run waiting for approval, approves it
with a comment, and sees it complete: the approval hands the run back to a worker (the
database queue, in another thread), and the page's live refresh shows the end. Screenshots
of each page go to ``test-artifacts/inspector/`` (``SQUIDMESH_TEST_ARTIFACTS`` to change
it); ``docs/images/`` holds copies of them.

It needs ``chromium`` and ``chromium-driver`` (``./scripts/test`` installs them with apt-get
when missing); without them it fails, saying so, rather than skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from squidmesh_sdk import Client, DatabaseExecutor, Worker
from squidmesh_sdk.ui import create_app
from tests.ui.conftest import ALICE_TOKEN, TOKENS
from tests.ui.workflows import WORKFLOWS, order_pipeline_payload

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SQUIDMESH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SQUIDMESH_CHROMEDRIVER", "/usr/bin/chromedriver")
MISSING = (
    "the browser test needs Debian's chromium and chromium-driver ({path} is missing): run "
    "./scripts/test, which installs them, or apt-get install -y chromium chromium-driver"
)


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("SQUIDMESH_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "inspector"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def driver() -> Iterator[Any]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            pytest.fail(MISSING.format(path=path), pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite runs as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    # An explicit driver path: Selenium Manager never downloads a browser or a driver.
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(
        f"sqlite:///{tmp_path}/inspector.db", WORKFLOWS, executor=DatabaseExecutor(), observers=()
    ) as app_client:
        app_client.migrate()
        yield app_client


@pytest.fixture
def server(client: Client) -> Iterator[str]:
    """The inspector on a free loopback port (uvicorn in a thread); yields its base URL."""
    app = create_app(
        client,
        token=TOKENS,
        refresh_seconds=1,
        trace_url="https://tempo.example/trace/{trace_id}",
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=20)


def screenshot(driver: Any, folder: Path, name: str) -> Path:
    """A full-page PNG: the window grown to the page's height first."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(height + 20, 600), 5000))
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), path
    driver.set_window_size(1400, 900)
    return path


def test_an_operator_approves_a_run_and_sees_it_complete(
    client: Client, server: str, driver: Any, artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with Worker(client, poll_interval=0.1, cron=False):
        client.start_run("dependency_recovery", {"account_id": "acct_7", "invoice_id": "inv_9"})
        client.start_run("saga_checkout", {"order_id": "o-17", "amount_cents": 4200})
        client.start_run("holding")
        waiting = client.start_run("manual_approval", {"account_id": "acct_<script>x</script>"})
        deadline = time.monotonic() + 30
        while client.inspect_run(waiting.id).status != "paused":
            assert time.monotonic() < deadline, "the run never reached its approval step"
            time.sleep(0.1)
        wait = WebDriverWait(driver, 20)

        # Signing in: the runs page sends a stranger to the login form first.
        driver.get(f"{server}/runs")
        assert "/login" in driver.current_url
        driver.find_element(By.ID, "token").send_keys(ALICE_TOKEN)
        screenshot(driver, artifacts, "01-sign-in")
        driver.find_element(By.ID, "sign-in").click()
        wait.until(ec.presence_of_element_located((By.ID, "runs-table")))
        assert driver.find_element(By.CSS_SELECTOR, ".who .actor").text == "alice"
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-run="{waiting.id}"]')
        assert row.get_attribute("data-status") == "paused"
        screenshot(driver, artifacts, "02-runs")

        # The run waiting for approval: why, and the buttons.
        row.find_element(By.CSS_SELECTOR, "td a").click()
        wait.until(ec.presence_of_element_located((By.ID, "explanation")))
        assert driver.find_element(By.ID, "reason").text == "paused for approval"
        assert driver.find_element(By.ID, "run-status").text == "paused"
        payload = driver.find_element(By.ID, "payload").text
        assert "acct_<script>x</script>" in payload  # shown as text, never run
        node = driver.find_element(By.CSS_SELECTOR, 'g.node[data-step="wait_for_approval"]')
        assert node.get_attribute("data-status") == "paused"
        screenshot(driver, artifacts, "03-run-waiting-for-approval")

        form = driver.find_element(By.CSS_SELECTOR, 'form[data-action="approve_run"]')
        form.find_element(By.NAME, "comment").send_keys("limits checked")
        form.find_element(By.ID, "action-approve_run").click()

        # The worker finishes the run; the page refreshes itself until it shows completed.
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "completed"))
        assert driver.find_element(By.ID, "notice").text == "Approved."
        audit = driver.find_element(By.ID, "audit").text
        assert "approved" in audit
        assert "alice" in audit
        assert "limits checked" in audit
        node = driver.find_element(By.CSS_SELECTOR, 'g.node[data-step="record_approval"]')
        assert node.get_attribute("data-status") == "completed"
        screenshot(driver, artifacts, "04-run-approved-and-completed")

        # The other pages, for the record.
        saga = client.list_runs(workflow="saga_checkout")[0]
        while not client.inspect_run(saga.id).terminal:
            assert time.monotonic() < deadline + 30, "the saga never finished"
            time.sleep(0.1)
        driver.get(f"{server}/runs/{saga.id}")
        wait.until(ec.presence_of_element_located((By.ID, "compensation")))
        screenshot(driver, artifacts, "05-run-failed-with-compensation")
        driver.get(f"{server}/workflows/manual_approval")
        screenshot(driver, artifacts, "06-workflow")
        driver.get(f"{server}/jobs")
        screenshot(driver, artifacts, "07-jobs")

        # One graph: a map, a branch to an approval beside parallel steps, a skipped step.
        order = client.start_run("order_pipeline", order_pipeline_payload())
        while client.inspect_run(order.id).status != "paused":
            assert time.monotonic() < deadline + 60, "the order never reached its review"
            time.sleep(0.1)
        client.approve_run(order.id, actor="manager")
        while not client.inspect_run(order.id).terminal:
            assert time.monotonic() < deadline + 90, "the order never finished"
            time.sleep(0.1)
        driver.get(f"{server}/runs/{order.id}")
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-status"), "completed"))
        skipped = driver.find_element(By.CSS_SELECTOR, 'g.node[data-step="cancel_order"]')
        assert skipped.get_attribute("data-status") == "skipped"
        shipped = driver.find_element(By.CSS_SELECTOR, 'g.node[data-step="ship"]')
        assert shipped.get_attribute("data-status") == "completed"
        assert "route_taken" in driver.find_element(By.ID, "audit").text
        screenshot(driver, artifacts, "08-run-one-graph")

    run = client.inspect_run(waiting.id, include_history=True)
    assert run.status == "completed"
    approvals = [event for event in run.events or () if event.type == "approved"]
    assert [event.actor for event in approvals] == [TOKENS[ALICE_TOKEN]]
    shots = sorted(path.name for path in artifacts.glob("0*.png"))
    assert shots == [
        "01-sign-in.png",
        "02-runs.png",
        "03-run-waiting-for-approval.png",
        "04-run-approved-and-completed.png",
        "05-run-failed-with-compensation.png",
        "06-workflow.png",
        "07-jobs.png",
        "08-run-one-graph.png",
    ]
    assert all((artifacts / name).stat().st_size > 10_000 for name in shots)
