"""``create_app``: the inspector as an ASGI (Starlette) application."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from squidmesh_sdk.client import Client
from squidmesh_sdk.ui import jobs_page, login_page, run_page, runs_page, workflows_page
from squidmesh_sdk.ui.config import Actor, AuthHook, build_settings
from squidmesh_sdk.ui.context import Inspector
from squidmesh_sdk.ui.redaction import Redactor

__all__ = ["create_app"]


def create_app(
    client: Client,
    *,
    auth: AuthHook | None = None,
    token: str | Mapping[str, Actor] | None = None,
    read_only: bool | None = None,
    redact: Redactor | None = None,
    trace_url: str | None = None,
    title: str = "squidmesh inspector",
    refresh_seconds: float = 5.0,
    page_size: int = 50,
    session_max_age: int = 12 * 3600,
) -> Starlette:
    """The run inspector for ``client``'s database, as an ASGI app to serve or mount.

    Mount it under a path of the host's own app (``app.mount("/squidmesh", inspector)`` in
    FastAPI or Starlette), or serve it alone (``squidmesh ui``, or any ASGI server).

    Pages: ``/runs`` (filters, keyset paging, live refresh), ``/runs/{id}`` (graph with each
    step's state, attempts timeline, context, audit trail, ``explain_run`` with its next
    actions as buttons, compensation results, trace link), ``/workflows`` and
    ``/workflows/{name}`` (versions, triggers, graph, cron next firing times), ``/jobs`` (the
    database queue, dead letters with retry / discard).

    Secure by default: without ``auth`` or ``token`` it is read-only and answers loopback
    clients (127.0.0.1, ::1) only. Every form is CSRF-protected, every value HTML-escaped,
    and no secret goes in a URL.

    Args:
        client: The application's client: the runs of its database, the workflows it holds.
        auth: The host's authentication: a callable given the Starlette ``Request`` that
            returns the actor (a name or a mapping, recorded with every action), ``None`` to
            refuse the request (401), or a ``Response`` to send instead (e.g. a redirect to
            the host's login page). It may be ``async``.
        token: Instead of ``auth``, a shared secret (at least 16 characters; actions are
            recorded as actor ``"ui-token"``) or a mapping of secrets to the actor each one
            signs in. Browsers sign in through a form (a session cookie); other clients send
            ``Authorization: Bearer <token>``.
        read_only: Offer no actions. The default is read-only exactly when there is no
            ``auth`` and no ``token``; ``False`` without either is refused.
        redact: Called as ``redact(where, value)`` on every payload, context, input, output,
            error, metadata and explanation shown; returns what to show (see
            :func:`~squidmesh_sdk.ui.redact_keys`).
        trace_url: A link template for a run's trace, holding ``{trace_id}``, e.g.
            ``"https://jaeger.example/trace/{trace_id}"``.
        title: Shown in the header and the window title.
        refresh_seconds: How often open pages refresh statuses; 0 turns it off.
        page_size: Runs (and jobs) per page, 1 to 500.
        session_max_age: Seconds a token sign-in lasts.

    Raises:
        InvalidArgument: an argument of the wrong type or range, or ``read_only=False``
            without ``auth`` or ``token``.
    """
    settings = build_settings(
        auth=auth,
        token=token,
        read_only=read_only,
        redact=redact,
        trace_url=trace_url,
        title=title,
        refresh_seconds=refresh_seconds,
        page_size=page_size,
        session_max_age=session_max_age,
    )
    inspector = Inspector(client, settings)
    route = inspector.route

    async def home(request: Request) -> Response:
        root = (request.scope.get("root_path", "") or "").rstrip("/")
        return RedirectResponse(f"{root}/runs", status_code=307)

    routes = [
        Route("/", home, name="home"),
        Route("/runs", route(runs_page.runs), name="runs"),
        Route("/runs/{run_id}", route(run_page.run), name="run"),
        Route("/runs/{run_id}/status", route(run_page.run_status), name="run_status"),
        Route(
            "/runs/{run_id}/actions/{name}",
            route(run_page.run_action, "action"),
            methods=["POST"],
            name="run_action",
        ),
        Route("/workflows", route(workflows_page.workflows), name="workflows"),
        Route("/workflows/{name}", route(workflows_page.workflow), name="workflow"),
        Route("/jobs", route(jobs_page.jobs), name="jobs"),
        Route(
            "/jobs/{job_id:int}/{action}",
            route(jobs_page.job_action, "action"),
            methods=["POST"],
            name="job_action",
        ),
        Route("/login", route(login_page.login, "login"), methods=["GET", "POST"], name="login"),
        Route("/logout", route(login_page.logout, "login"), methods=["POST"], name="logout"),
        Mount(
            "/static",
            app=StaticFiles(packages=[("squidmesh_sdk.ui", "static")]),
            name="static",
        ),
    ]
    app = Starlette(routes=routes)
    app.state.inspector = inspector
    return app
