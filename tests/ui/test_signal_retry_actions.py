"""The inspector's Send signal and Retry buttons, and parent / child links, on both databases."""

from __future__ import annotations

import re

import pytest

from squidmesh_sdk.testing import WorkflowEnvironment
from tests.ui.conftest import ALICE, Browser, text_of
from tests.ui.workflows import OUTAGE


def _offered(page_text: str) -> list[str]:
    return re.findall(r'data-action="([a-z_]+)"', page_text)


def test_send_signal_delivers_the_payload_and_the_run_completes(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run = env.start_run("awaiting")
    page = browser.get(f"/runs/{run.id}")
    assert _offered(page.text) == ["signal_run", "cancel_run"]
    refused = browser.act(run.id, "signal_run", {"payload": '{"amount": "lots"}'})
    assert refused.status_code == 409
    assert "invalid payload for signal 'paid'" in text_of(refused.text)
    not_json = browser.act(run.id, "signal_run", {"payload": "{amount"})
    assert "must be a JSON object" in text_of(not_json.text)
    done = browser.act(run.id, "signal_run", {"payload": '{"amount": 12}', "idempotency_key": "k"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/runs/{run.id}?done=signal_run"
    assert "Signalled." in browser.get(done.headers["location"]).text
    finished = env.client.inspect_run(run.id, include_history=True)
    assert finished.status == "completed"
    assert finished.context["payment"] == {"amount": 12}
    assert [(s.idempotency_key, s.status) for s in finished.signals or ()] == [("k", "consumed")]


def test_retry_resumes_a_failed_run_with_the_actor_recorded(
    env: WorkflowEnvironment, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(OUTAGE, "on", True)
    run = env.start_run("fragile")
    assert env.client.inspect_run(run.id).status == "failed"
    assert _offered(browser.get(f"/runs/{run.id}").text) == ["retry_run", "replay_run"]
    monkeypatch.setitem(OUTAGE, "on", False)
    done = browser.act(run.id, "retry_run", {"reason": "partner back"})
    assert done.status_code == 303
    finished = env.client.inspect_run(run.id, include_history=True)
    assert finished.status == "completed"
    events = [(e.type, e.actor, e.comment) for e in finished.events or () if e.type == "retried"]
    assert events == [("retried", ALICE, "partner back")]


def test_parent_and_child_link_to_each_other(env: WorkflowEnvironment, browser: Browser) -> None:
    run = env.start_run("parent")
    (child,) = env.client.inspect_run(run.id, include_history=True).children or ()
    parent_page = browser.get(f"/runs/{run.id}")
    assert f'href="/runs/{child.child_run_id}"' in parent_page.text
    assert "Child run (awaiting, running)" in text_of(parent_page.text)
    child_page = browser.get(f"/runs/{child.child_run_id}")
    assert f'href="/runs/{run.id}"' in child_page.text
    assert "Parent run" in text_of(child_page.text)
