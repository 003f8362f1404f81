"""Who may see and act: authentication, CSRF, read-only mode, escaping, redaction, headers."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import RedirectResponse

from squidmesh_sdk import InvalidArgument
from squidmesh_sdk.testing import WorkflowEnvironment
from squidmesh_sdk.ui import create_app, redact_keys
from squidmesh_sdk.ui.security import session_cookie
from tests.ui.conftest import ALICE_TOKEN, TOKENS, Browser, text_of

SCRIPT = "<script>alert('owned')</script>"
LOCAL = ("127.0.0.1", 50123)


def paused_run(env: WorkflowEnvironment) -> str:
    return env.start_run("manual_approval", {"account_id": "acct_1"}).id


def status(env: WorkflowEnvironment, run_id: str) -> str:
    return env.client.inspect_run(run_id).status


# -- no authentication: local and read-only ------------------------------------------------


def test_without_authentication_it_is_read_only_and_local_only(env: WorkflowEnvironment) -> None:
    run_id = paused_run(env)
    app = create_app(env.client)
    local = Browser(app, client=LOCAL, base_url="http://127.0.0.1:8787")
    page = local.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert "read-only" in page.text
    assert "data-action=" not in page.text  # no form, only greyed labels
    assert 'class="chip disabled"' in page.text
    refused = local.act(run_id, "approve_run")
    assert refused.status_code == 403
    assert "read-only" in text_of(refused.text)
    assert status(env, run_id) == "paused"
    for address in ("testclient", "10.1.2.3", "192.168.0.7"):
        remote = Browser(app, client=(address, 40000))
        denied = remote.get("/runs")
        assert denied.status_code == 403, address
        assert "only answers requests from this machine" in text_of(denied.text)
        assert run_id not in denied.text
        remote.close()
    # From this machine, but not for this machine: a site whose name was rebound to 127.0.0.1
    # (its page reads the inspector as same-origin), or a proxy here forwarding the world.
    rebound = Browser(app, client=LOCAL, base_url="http://evil.example:8787")
    proxied = Browser(app, client=LOCAL, base_url="http://127.0.0.1:8787")
    for browser, headers in (
        (rebound, {}),
        (proxied, {"X-Forwarded-For": "203.0.113.9"}),
        (proxied, {"Forwarded": "for=203.0.113.9"}),
        (proxied, {"X-Real-IP": "203.0.113.9"}),
    ):
        denied = browser.get("/runs", headers=headers)
        assert denied.status_code == 403, headers
        assert run_id not in denied.text
    for base in ("http://localhost:8787", "http://[::1]:8787"):
        also_local = Browser(app, client=LOCAL, base_url=base)
        assert also_local.get("/runs").status_code == 200, base
        also_local.close()
    rebound.close()
    proxied.close()
    local.close()


def test_actions_cannot_be_enabled_without_authentication(env: WorkflowEnvironment) -> None:
    with pytest.raises(InvalidArgument, match="needs auth="):
        create_app(env.client, read_only=False)
    with pytest.raises(InvalidArgument, match="at least 16 characters"):
        create_app(env.client, token="short")  # noqa: S106 - a weak token, refused
    with pytest.raises(InvalidArgument, match="not both"):
        create_app(env.client, token=ALICE_TOKEN, auth=lambda request: "x")
    with pytest.raises(InvalidArgument, match="trace_id"):
        create_app(env.client, trace_url="https://tempo.example/trace/")
    with pytest.raises(InvalidArgument, match="page_size"):
        create_app(env.client, page_size=0)


# -- an authentication hook ---------------------------------------------------------------


def test_an_auth_hook_decides_and_its_actor_is_recorded(env: WorkflowEnvironment) -> None:
    run_id = paused_run(env)

    def operator(request: Request) -> Any:
        user = request.headers.get("x-test-user")
        if user == "redirect-me":
            return RedirectResponse("/host/login", status_code=302)
        return {"name": user, "via": "hook"} if user else None

    app = create_app(env.client, auth=operator)
    anonymous = Browser(app)
    assert anonymous.get("/runs").status_code == 401
    assert anonymous.get(f"/runs/{run_id}").status_code == 401
    assert anonymous.act(run_id, "approve_run").status_code == 401
    assert status(env, run_id) == "paused"
    redirected = anonymous.get("/runs", headers={"x-test-user": "redirect-me"})
    assert (redirected.status_code, redirected.headers["location"]) == (302, "/host/login")

    carol = Browser(app, headers={"x-test-user": "carol"})
    assert "signed in as carol" in text_of(carol.get("/runs").text)
    assert carol.act(run_id, "approve_run", {"comment": "ok"}).status_code == 303
    run = env.client.inspect_run(run_id, include_history=True)
    assert run.status == "completed"
    (approval,) = [event for event in run.events or () if event.type == "approved"]
    assert approval.actor == {"name": "carol", "via": "hook"}
    anonymous.close()
    carol.close()


def test_an_async_auth_hook_is_awaited(env: WorkflowEnvironment) -> None:
    async def operator(request: Request) -> str | None:
        return "dana" if request.headers.get("x-test-user") == "dana" else None

    app = create_app(env.client, auth=operator)
    assert Browser(app).get("/runs").status_code == 401
    assert Browser(app, headers={"x-test-user": "dana"}).get("/runs").status_code == 200


# -- tokens -------------------------------------------------------------------------------


def test_a_token_inspector_asks_to_sign_in_and_refuses_actions_without_it(
    env: WorkflowEnvironment,
) -> None:
    run_id = paused_run(env)
    app = create_app(env.client, token=TOKENS)
    stranger = Browser(app)
    asked = stranger.get(f"/runs/{run_id}")
    assert asked.status_code == 303
    assert asked.headers["location"] == f"/login?next=%2Fruns%2F{run_id}"
    assert stranger.act(run_id, "approve_run").status_code == 401
    assert status(env, run_id) == "paused"
    wrong = stranger.post("/login", {"token": "not-the-token-at-all", "next": "/runs"})
    assert wrong.status_code == 401
    assert "That token is not valid." in wrong.text
    assert stranger.get("/runs").status_code == 303
    stranger.close()


def test_signing_in_keeps_the_token_out_of_urls_and_cookies(env: WorkflowEnvironment) -> None:
    app = create_app(env.client, token=TOKENS)
    browser = Browser(app)
    form = browser.get("/login?next=/runs")
    assert 'method="post"' in form.text
    assert 'type="password" name="token"' in form.text
    signed = browser.post("/login", {"token": ALICE_TOKEN, "next": "/workflows"})
    assert signed.status_code == 303
    assert signed.headers["location"] == "/workflows"
    cookie = signed.headers["set-cookie"]
    assert "squidmesh_session=" in cookie
    assert ALICE_TOKEN not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    page = browser.get("/workflows")
    assert page.status_code == 200
    assert ALICE_TOKEN not in page.text
    # Signing out ends the session.
    assert browser.post("/logout").status_code == 303
    browser.http.cookies.delete("squidmesh_session")
    assert browser.get("/runs").status_code == 303
    browser.close()


def test_sign_in_never_redirects_to_another_site(env: WorkflowEnvironment) -> None:
    app = create_app(env.client, token=TOKENS)
    for target in (
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/\t/evil.example/",  # browsers drop the tab: //evil.example/
        "/\n/evil.example/",
        "/ /evil.example/",
    ):
        browser = Browser(app)
        signed = browser.post("/login", {"token": ALICE_TOKEN, "next": target})
        assert signed.headers["location"] == "/runs", target
        browser.close()


def test_a_bearer_token_works_for_scripts_and_a_session_expires(env: WorkflowEnvironment) -> None:
    app = create_app(env.client, token=TOKENS, session_max_age=60)
    scripted = Browser(app, headers={"Authorization": f"Bearer {ALICE_TOKEN}"})
    assert scripted.get("/runs").status_code == 200
    wrong = Browser(app, headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert wrong.get("/runs").status_code == 303
    stale = Browser(app)
    stale.http.cookies.set("squidmesh_session", session_cookie(ALICE_TOKEN, time.time() - 120))
    assert stale.get("/runs").status_code == 303
    fresh = Browser(app)
    fresh.http.cookies.set("squidmesh_session", session_cookie(ALICE_TOKEN))
    assert fresh.get("/runs").status_code == 200
    forged = Browser(app)
    forged.http.cookies.set("squidmesh_session", session_cookie("some-other-token-1234"))
    assert forged.get("/runs").status_code == 303


# -- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "headers"),
    [
        pytest.param({}, {}, id="no-token"),
        pytest.param({"csrf_token": "x" * 43}, {}, id="wrong-token"),
        pytest.param(None, {"Origin": "https://evil.example"}, id="other-origin"),
        pytest.param(None, {"Sec-Fetch-Site": "cross-site"}, id="cross-site"),
        pytest.param(None, {"Origin": "null"}, id="opaque-origin"),
    ],
)
def test_an_action_without_a_valid_csrf_token_is_refused(
    env: WorkflowEnvironment, browser: Browser, form: dict[str, str] | None, headers: dict[str, str]
) -> None:
    run_id = paused_run(env)
    data = {"csrf_token": browser.csrf()} if form is None else form
    refused = browser.http.post(
        f"/runs/{run_id}/actions/approve_run", data={**data, "comment": "x"}, headers=headers
    )
    assert refused.status_code == 403
    assert "could not be verified" in text_of(refused.text)
    assert status(env, run_id) == "paused"


def test_a_same_origin_form_passes_the_csrf_check(
    env: WorkflowEnvironment, browser: Browser
) -> None:
    run_id = paused_run(env)
    done = browser.act(run_id, "approve_run")
    assert done.status_code == 303
    other = paused_run(env)
    headers = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    data = {"csrf_token": browser.csrf()}
    assert (
        browser.http.post(
            f"/runs/{other}/actions/approve_run", data=data, headers=headers
        ).status_code
        == 303
    )
    # Behind a proxy that rewrites Host (nginx's default): the browser's Sec-Fetch-Site still
    # vouches for the form, where comparing Origin with Host refused every one.
    third = paused_run(env)
    proxied = {"Origin": "https://inspector.example.com", "Sec-Fetch-Site": "same-origin"}
    posted = browser.http.post(f"/runs/{third}/actions/approve_run", data=data, headers=proxied)
    assert posted.status_code == 303


def test_login_and_job_forms_are_csrf_checked_too(env: WorkflowEnvironment) -> None:
    app = create_app(env.client, token=TOKENS)
    browser = Browser(app)
    refused = browser.http.post("/login", data={"token": ALICE_TOKEN, "next": "/runs"})
    assert refused.status_code == 403
    browser.sign_in()
    assert browser.http.post("/jobs/1/retry", data={"force": "on"}).status_code == 403
    assert browser.http.post("/jobs/1/retry").status_code == 400  # not a form at all
    browser.close()


# -- read-only mode ------------------------------------------------------------------------


def test_read_only_mode_offers_no_action_even_to_a_signed_in_user(
    env: WorkflowEnvironment,
) -> None:
    run_id = paused_run(env)
    browser = Browser(create_app(env.client, token=TOKENS, read_only=True))
    browser.sign_in()
    page = browser.get(f"/runs/{run_id}")
    assert "data-action=" not in page.text
    assert "read-only" in page.text
    refused = browser.act(run_id, "approve_run")
    assert refused.status_code == 403
    assert status(env, run_id) == "paused"
    browser.close()


# -- escaping, redaction, headers ------------------------------------------------------------


def test_a_script_in_a_payload_is_shown_as_text(env: WorkflowEnvironment, browser: Browser) -> None:
    run = env.start_run("manual_approval", {"account_id": SCRIPT})
    env.client.approve_run(run.id, actor=SCRIPT, comment=SCRIPT)
    for path in (f"/runs/{run.id}", "/runs"):
        page = browser.get(path)
        assert "<script>alert" not in page.text, path
        scripts = re.findall(r"<script[^>]*>", page.text)
        assert scripts == ['<script src="/static/inspector.js" defer>'], path
    page = browser.get(f"/runs/{run.id}")
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page.text
    assert SCRIPT in text_of(page.text)  # what a person reads: the text itself


def test_the_redaction_hook_hides_values_everywhere(env: WorkflowEnvironment) -> None:
    run = env.start_run("manual_approval", {"account_id": "acct_SECRET_42"})
    env.client.approve_run(run.id, actor="ops")
    browser = Browser(create_app(env.client, token=TOKENS, redact=redact_keys("account_*")))
    browser.sign_in()
    page = browser.get(f"/runs/{run.id}")
    assert page.status_code == 200
    assert "acct_SECRET_42" not in page.text
    assert "••••••" in page.text
    assert env.client.inspect_run(run.id).payload == {"account_id": "acct_SECRET_42"}
    browser.close()


def test_a_redactor_that_masks_whole_errors_does_not_break_the_pages(
    env: WorkflowEnvironment,
) -> None:
    # A documented-shape redactor: errors replaced by the mask, not a mapping any more. The run
    # page read .get() of it and answered 500.
    run = env.start_run("flaky")  # its first attempt failed: an error with a traceback

    def hide_errors(where: str, value: Any) -> Any:
        return "••••••" if where == "error" else value

    browser = Browser(create_app(env.client, token=TOKENS, redact=hide_errors))
    browser.sign_in()
    page = browser.get(f"/runs/{run.id}")
    assert page.status_code == 200
    shown_errors = re.findall(r'class="error-text">([^<]*)<', page.text)
    assert shown_errors
    assert all("partner unreachable" not in error for error in shown_errors), shown_errors
    browser.close()


def test_every_page_sends_security_headers(env: WorkflowEnvironment, browser: Browser) -> None:
    run_id = paused_run(env)
    for path in ("/runs", f"/runs/{run_id}", "/workflows", "/jobs", "/login"):
        headers = browser.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
    fresh = Browser(create_app(env.client, token=TOKENS))
    cookie = fresh.get("/login").headers["set-cookie"]
    assert cookie.startswith("squidmesh_csrf=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    fresh.close()
