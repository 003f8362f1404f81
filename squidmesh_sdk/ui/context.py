"""What every page handler works with: the client, the settings, templates and the request.

Handlers are ``async def handler(page: Page) -> Response``; :meth:`Inspector.route` wraps one
into a Starlette endpoint that authenticates the request first (refusals render as pages),
checks CSRF and the read-only mode on actions, and adds the security headers to whatever
the handler returns. Client calls block on the database, so handlers run them through
:meth:`Page.call`, in Starlette's thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, ParamSpec, TypeVar
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from squidmesh_sdk.client import Client
from squidmesh_sdk.ui import present, redaction, security
from squidmesh_sdk.ui.config import Actor, Settings

__all__ = ["MAX_FORM_BYTES", "Inspector", "Page"]

P = ParamSpec("P")
T = TypeVar("T")

MAX_FORM_BYTES = 64 * 1024
Kind = Literal["page", "action", "login"]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("squidmesh_sdk.ui", "templates"),
        # Always on, whatever the file name: every value is escaped unless marked safe.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=present.time_text,
        duration=present.duration,
        short_id=present.short_id,
        slug=present.css_slug,
        humanize=present.humanize,
        actor=present.actor_text,
        error=present.error_summary,
    )
    return env


@dataclass(slots=True)
class Inspector:
    """The app's shared state: the client, its settings and the template environment."""

    client: Client
    settings: Settings
    env: jinja2.Environment = field(default_factory=_environment)

    def route(
        self, handler: Callable[[Page], Awaitable[Response]], kind: Kind = "page"
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint running ``handler`` behind authentication (and CSRF)."""

        async def endpoint(request: Request) -> Response:
            response = await self._guarded(request, handler, kind)
            return security.secure_headers(request, response)

        endpoint.__name__ = handler.__name__
        return endpoint

    async def _guarded(
        self, request: Request, handler: Callable[[Page], Awaitable[Response]], kind: Kind
    ) -> Response:
        form: dict[str, str] = {}
        if request.method == "POST":
            parsed = await _read_form(request)
            if parsed is None:
                page = Page(self, request, None, {})
                return page.refusal(security.Refusal(400, "The form could not be read."))
            form = parsed
        if kind == "login":
            return await handler(Page(self, request, None, form))
        identity = await security.authenticate(request, self.settings)
        if isinstance(identity, Response):
            return identity
        if isinstance(identity, security.Refusal):
            return Page(self, request, None, form).refusal(identity)
        page = Page(self, request, identity.actor, form)
        if kind == "action":
            if self.settings.read_only:
                return page.refusal(
                    security.Refusal(403, "This inspector is read-only: actions are disabled.")
                )
            if not security.check_csrf(request, form):
                return page.refusal(security.Refusal(403, security.MSG_CSRF))
        return await handler(page)


@dataclass(slots=True)
class Page:
    """One request as a handler sees it."""

    inspector: Inspector
    request: Request
    actor: Actor | None
    form: Mapping[str, str]

    @property
    def client(self) -> Client:
        """The application's client."""
        return self.inspector.client

    @property
    def settings(self) -> Settings:
        """The inspector's settings."""
        return self.inspector.settings

    @property
    def can_act(self) -> bool:
        """Whether action buttons are offered: not read-only and an authenticated actor."""
        return not self.settings.read_only and self.actor is not None

    def now(self) -> datetime:
        """The client's time."""
        return self.client.clock.now()

    async def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking (database) call in the thread pool."""
        return await run_in_threadpool(function, *args, **kwargs)

    def url(self, path: str, **query: Any) -> str:
        """The URL of the inspector's ``path`` (e.g. ``/runs``), under its mount point.

        Query parameters whose value is ``None`` or ``""`` are left out.
        """
        root = (self.request.scope.get("root_path", "") or "").rstrip("/")
        url = root + quote(path)
        pairs = [(key, str(value)) for key, value in query.items() if value not in (None, "")]
        return f"{url}?{urlencode(pairs)}" if pairs else url

    def run_url(self, run_id: str) -> str:
        """The page of a run."""
        return self.url(f"/runs/{run_id}")

    def show(self, where: str, value: Any) -> Any:
        """``value`` redacted as the settings say, for display."""
        return redaction.apply(self.settings.redact, where, value)

    def json(self, where: str, value: Any) -> Any:
        """``value`` redacted, as indented, escaped HTML with run ids linked."""
        return present.json_html(self.show(where, value), self.run_url)

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        """Render a template with the common values (navigation, actor, CSRF token...)."""
        now = self.now()
        common = {
            "page": self,
            "title": self.settings.title,
            "actor": self.actor,
            "read_only": self.settings.read_only,
            "can_act": self.can_act,
            "csrf_field": security.CSRF_FIELD,
            "csrf_token": security.csrf_token(self.request),
            "token_login": bool(self.settings.tokens),
            "refresh_seconds": self.settings.refresh_seconds,
            "now": now,
            "page_ago": lambda moment: present.ago(moment, now),
            "url": self.url,
            "run_url": self.run_url,
        }
        html = self.inspector.env.get_template(template).render(**common, **values)
        return HTMLResponse(html, status_code=status)

    def refusal(self, refusal: security.Refusal) -> Response:
        """The page that says why a request was refused (a login form for token sessions)."""
        if refusal.login and self.request.method == "GET":
            target = self.request.url.path + (
                f"?{self.request.url.query}" if self.request.url.query else ""
            )
            return RedirectResponse(self.url("/login", next=target), status_code=303)
        return self.render(
            "refused.html", status=refusal.status, message=refusal.message, login=refusal.login
        )

    def redirect(self, path: str, **query: Any) -> RedirectResponse:
        """See other: after an action, the page to show (a GET, so reloading repeats nothing)."""
        return RedirectResponse(self.url(path, **query), status_code=303)


async def _read_form(request: Request) -> dict[str, str] | None:
    """An URL-encoded form body, at most 64 KiB; ``None`` for anything else."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    return dict(parse_qsl(text, keep_blank_values=True))
