"""The inspector's actions, each recorded with the signed-in actor, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import threading
from datetime import datetime

import pytest

from squidmesh_sdk import (
    Client,
    DatabaseExecutor,
    InvalidArgument,
    InvalidResume,
    Workflow,
    manual,
)
from squidmesh_sdk.store import claims as claim_store
from squidmesh_sdk.store import jobs as job_store
from squidmesh_sdk.testing import WorkflowEnvironment
from squidmesh_sdk.ui import create_app
from tests.ui.conftest import ALICE, BOB_TOKEN, TOKENS, Browser, text_of
from tests.ui.workflows import WORKFLOWS


def decision(env: WorkflowEnvironment, run_id: str, kind: str) -> tuple[str, object, object]:
    """The run's last audit event of this type (other events, e.g. ``skipped``, may follow)."""
    run = env.client.inspect_run(run_id, include_history=True)
    found = [(e.type, e.actor, e.comment) for e in run.events or () if e.type == kind]
    assert found, [e.type for e in run.events or ()]
    return found[-1]


def test_approve_records_the_actor_and_comment_and_the_run_completes(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run = env.start_run("manual_approval", {"account_id": "acct_1"})
    done = browser.act(run.id, "approve_run", {"comment": "limits checked"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/runs/{run.id}?done=approve_run"
    page = browser.get(done.headers["location"])
    assert "Approved." in page.text
    assert 'id="run-status"><span class="badge st-completed">completed</span>' in page.text
    assert env.client.inspect_run(run.id).status == "completed"
    assert decision(env, run.id, "approved") == ("approved", ALICE, "limits checked")
    audit = page.text.split('id="audit"')[1]
    assert "alice" in text_of(audit)
    assert "limits checked" in text_of(audit)


def test_reject_takes_the_error_route_as_bob(env: WorkflowEnvironment) -> None:
    bob = Browser(create_app(env.client, token=TOKENS))
    bob.sign_in(BOB_TOKEN)
    run = env.start_run("manual_approval", {"account_id": "acct_1"})
    assert bob.act(run.id, "reject_run", {"comment": ""}).status_code == 303
    finished = env.client.inspect_run(run.id, include_history=True)
    assert finished.status == "completed"
    assert finished.context["approval"]["status"] == "rejected"
    assert decision(env, run.id, "rejected") == ("rejected", "bob", None)
    bob.close()


def test_each_of_two_waiting_approvals_gets_its_own_buttons(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run = env.start_run("two_approvals")
    page = browser.get(f"/runs/{run.id}")
    forms = re.findall(r'data-action="([a-z_]+)" data-step="([a-z]+)"', page.text)
    assert sorted(forms) == [
        ("approve_run", "finance"),
        ("approve_run", "legal"),
        ("reject_run", "finance"),
        ("reject_run", "legal"),
    ]
    assert browser.act(run.id, "approve_run", {"step": "legal"}).status_code == 303
    assert env.client.inspect_run(run.id).status == "paused"  # finance still waits
    page = browser.get(f"/runs/{run.id}")
    assert 'data-step="legal"' not in "".join(re.findall(r"<form[^>]*>", page.text))
    assert browser.act(run.id, "approve_run", {"step": "finance"}).status_code == 303
    done = env.client.inspect_run(run.id)
    assert done.status == "completed"
    assert done.context["published"] == "approved+approved"
    approvals = [
        (e.step, e.actor)
        for e in env.client.inspect_run(run.id, include_history=True).events or ()
        if e.type == "approved"
    ]
    assert approvals == [("legal", ALICE), ("finance", ALICE)]


def test_unblock_resumes_a_paused_run(env: WorkflowEnvironment, browser: Browser) -> None:
    run = env.start_run("holding")
    page = browser.get(f"/runs/{run.id}")
    assert re.findall(r'data-action="([a-z_]+)"', page.text) == ["unblock_run", "cancel_run"]
    assert browser.act(run.id, "unblock_run", {"comment": "stock arrived"}).status_code == 303
    assert env.client.inspect_run(run.id).status == "completed"
    assert decision(env, run.id, "resumed") == ("resumed", ALICE, "stock arrived")


def test_cancel_records_the_reason(env: WorkflowEnvironment, browser: Browser) -> None:
    run = env.start_run("holding")
    assert browser.act(run.id, "cancel_run", {"reason": "duplicate order"}).status_code == 303
    assert env.client.inspect_run(run.id).status == "cancelled"
    assert decision(env, run.id, "cancelled") == ("cancelled", ALICE, "duplicate order")


def test_replay_needs_the_override_after_an_irreversible_step(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run = env.start_run("transfer")
    assert env.client.inspect_run(run.id).status == "completed"
    page = browser.get(f"/runs/{run.id}")
    assert re.findall(r'data-action="([a-z_]+)"', page.text) == ["replay_run"]

    refused = browser.act(run.id, "replay_run", {"reason": "resend"})
    assert refused.status_code == 409
    assert "irreversible" in text_of(refused.text.split('id="error"')[1].split("</p>")[0])
    assert len(env.client.list_runs(workflow="transfer")) == 1

    done = browser.act(run.id, "replay_run", {"reason": "resend", "allow_irreversible": "on"})
    assert done.status_code == 303
    (replayed_id,) = re.findall(r"/runs/([0-9a-f-]{36})\?done=replay_run", done.headers["location"])
    replayed = env.client.inspect_run(replayed_id)
    assert replayed.replayed_from_run_id == run.id
    source = env.client.inspect_run(run.id, include_history=True)
    (event,) = source.events or ()
    assert (event.type, event.actor, event.comment) == ("replayed", ALICE, "resend")
    assert event.metadata == {"replay_run_id": replayed_id, "allow_irreversible": True}
    # Both runs link to each other on their pages.
    assert f'href="/runs/{replayed_id}"' in browser.get(f"/runs/{run.id}").text
    assert f'href="/runs/{run.id}"' in browser.get(f"/runs/{replayed_id}").text


def test_an_action_the_run_cannot_take_is_refused_with_the_reason(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run = env.start_run("holding")
    env.client.cancel_run(run.id)
    refused = browser.act(run.id, "approve_run")
    assert refused.status_code == 409
    assert 'id="error"' in refused.text
    assert env.client.inspect_run(run.id).status == "cancelled"
    unknown = browser.act(run.id, "launch_rockets")
    assert unknown.status_code == 404
    assert "Unknown action &#39;launch_rockets&#39;" in unknown.text
    missing = browser.act("01a2495a-0000-7000-8000-000000000000", "cancel_run")
    assert missing.status_code == 404


def _dead_letter(client: Client) -> job_store.Job:
    """Lease the oldest due job, then give up on it as a worker does after max_deliveries."""
    with client.runtime.transaction() as tx:
        (job,) = claim_store.claim(tx, worker="w-1", queues=("default",), limit=1, lease=300)
    with client.runtime.transaction() as tx:
        assert job_store.fail(tx, job.id, worker="w-1", error={"message": "reset by peer"})
    return job


def test_dead_letters_are_retried_and_discarded_from_the_jobs_page(database_url: str) -> None:
    with Client(database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()) as client:
        first = client.start_run("holding")
        dead = _dead_letter(client)
        second = client.start_run("holding")
        queued_run = client.start_run("holding")
        del queued_run
        browser = Browser(create_app(client, token=TOKENS))
        browser.sign_in()

        page = browser.get("/jobs")
        assert page.status_code == 200
        # "²" is a digit to str.isdigit() but not to int(): was a 500.
        assert browser.get("/jobs?after=%C2%B2").status_code == 200
        states = re.findall(r'<tr data-job="(\d+)" data-state="([a-z]+)">', page.text)
        assert (str(dead.id), "failed") in states
        assert [s for _, s in states].count("queued") == 2
        stats = page.text.split('<tr data-queue="default">')[1].split("</tr>")[0]
        assert re.findall(r"<td>(\d+)</td>", stats) == ["2", "0", "0"]
        failed_only = browser.get("/jobs?state=failed")
        assert re.findall(r'<tr data-job="(\d+)"', failed_only.text) == [str(dead.id)]
        assert "reset by peer" in failed_only.text

        # Its run still waits for it: discarding needs "discard anyway".
        refused = browser.post(f"/jobs/{dead.id}/discard", {"state": "failed"})
        assert refused.status_code == 409
        assert f"is what run {first.id} (pending) waits for" in text_of(refused.text)

        retried = browser.post(f"/jobs/{dead.id}/retry", {"state": "failed"})
        assert retried.status_code == 303
        assert retried.headers["location"] == f"/jobs?state=failed&done=retry&job={dead.id}"
        assert "queued again, due now" in browser.get(retried.headers["location"]).text
        with client.database.read() as connection:
            again = job_store.get_job(connection, dead.id)
        assert again is not None
        assert again.status == "queued"

        second_dead = _dead_letter(client)
        assert second_dead.run_id in (first.id, second.id)
        forced = browser.post(f"/jobs/{second_dead.id}/discard", {"force": "on"})
        assert forced.status_code == 303
        with client.database.read() as connection:
            assert job_store.get_job(connection, second_dead.id) is None
        gone = browser.post(f"/jobs/{second_dead.id}/retry")
        assert gone.status_code == 404
        assert "no longer exists" in text_of(gone.text)
        browser.close()


def test_the_client_checks_the_new_arguments(env: WorkflowEnvironment) -> None:
    with pytest.raises(InvalidArgument, match="since must be an aware datetime"):
        env.client.list_runs(since=datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose
    run = env.start_run("holding")
    env.client.cancel_run(run.id)
    with pytest.raises(InvalidResume):
        env.client.replay_run(run.id, actor="  ")
    assert len(env.client.list_runs(workflow="holding")) == 1


def test_a_run_held_by_a_queue_limit_shows_why_on_its_page(database_url: str) -> None:
    with Client(database_url, WORKFLOWS, executor=DatabaseExecutor(), observers=()) as client:
        client.set_queue_limits("default", concurrency=1)
        client.start_run("holding")
        held = client.start_run("holding")
        with client.runtime.transaction() as tx:
            claimed = claim_store.claim(tx, worker="w-1", queues=("default",), limit=5, lease=300)
        assert len(claimed) == 1
        browser = Browser(create_app(client, token=TOKENS))
        browser.sign_in()
        page = browser.get(f"/runs/{held.id}")
        assert page.status_code == 200
        text = text_of(page.text)
        assert "waiting for queue limit" in text.lower()
        assert "&#34;concurrency&#34;: 1" in page.text
        browser.close()


def _beside() -> Workflow:
    """An approval beside a branch whose step is running (held on ``gate``)."""
    wf = Workflow("beside", triggers=[manual("go")])

    @wf.step
    def begin() -> None:
        return None

    @wf.step(after=[begin])
    def slow() -> None:
        STARTED.set()
        assert GATE.wait(timeout=60)

    approve = wf.approval("approve", after=[begin])

    @wf.step(after=[slow, approve])
    def finish() -> None:
        return None

    return wf


STARTED, GATE = threading.Event(), threading.Event()


def test_an_approval_beside_a_running_step_is_decided_for_the_approval(
    database_url: str,
) -> None:
    # The explanation named the join after both branches (waiting_for_dependencies), with no
    # decision to offer; and the page's forms named the running step, which the server refused:
    # "no pause or approval waits at this step".
    STARTED.clear()
    GATE.clear()
    running: list[threading.Thread] = []
    with Client(database_url, [_beside()], executor=DatabaseExecutor(), observers=()) as client:
        client.migrate()
        run = client.start_run("beside")
        try:
            for _ in range(2):  # begin; then slow (held on the gate) and the approval
                with client.runtime.transaction() as tx:
                    claimed = claim_store.claim(
                        tx, worker="ui-tests", queues=("default",), limit=10, lease=60
                    )
                for job in claimed:
                    if job.step == "slow":
                        thread = threading.Thread(target=client.perform, args=(job.payload,))
                        running.append(thread)
                        thread.start()
                        assert STARTED.wait(timeout=60)
                    else:
                        client.perform(job.payload)
            explained = client.explain_run(run.id)
            assert (explained.reason, explained.step) == ("step_running", "slow")
            assert explained.details["waiting_steps"] == ["approve"]
            assert "unblock_run" not in explained.next_actions  # an approval, not a pause
            browser = Browser(create_app(client, token=TOKENS))
            browser.sign_in()
            page = browser.get(f"/runs/{run.id}")
            forms = re.findall(r'data-action="(\w+)" data-step="(\w+)"', page.text)
            assert forms == [("approve_run", "approve"), ("reject_run", "approve")]
            decided = browser.act(run.id, "approve_run", {"step": "approve"})
            assert decided.status_code == 303, text_of(decided.text)
            browser.close()
        finally:
            GATE.set()
            for thread in running:
                thread.join(timeout=60)
        events = client.inspect_run(run.id, include_history=True).events or ()
        assert [e.step for e in events if e.type == "approved"] == ["approve"]
