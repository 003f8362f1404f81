"""Signing in with a token: the login form, and signing out.

Only for ``token=`` inspectors (with an ``auth`` hook the host signs people in). The token is
posted in the form's body, never in a URL; a valid one sets the session cookie (see
:func:`squidmesh_sdk.ui.security.session_cookie`) and redirects to the page first asked for.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.responses import Response

from squidmesh_sdk.ui import security
from squidmesh_sdk.ui.context import Page

__all__ = ["login", "logout"]

MSG_BAD_TOKEN = "That token is not valid."  # noqa: S105 - a message


async def login(page: Page) -> Response:
    """``GET /login``: the form; ``POST /login``: check the token, start a session."""
    if not page.settings.tokens:
        return page.redirect("/runs")
    target = _safe_next(page, page.form.get("next") or page.request.query_params.get("next", ""))
    if page.request.method == "GET":
        return page.render("login.html", next=target, error=None)
    if not security.check_csrf(page.request, page.form):
        return page.render("login.html", status=403, next=target, error=security.MSG_CSRF)
    token = page.form.get("token", "").strip()
    matched = next((secret for secret in page.settings.tokens if _equal(secret, token)), None)
    if matched is None:
        return page.render("login.html", status=401, next=target, error=MSG_BAD_TOKEN)
    response = page.redirect(target)
    # redirect() builds a URL under our mount; the target already is one: send it as it is.
    response.headers["location"] = target
    response.set_cookie(
        security.SESSION_COOKIE,
        security.session_cookie(matched),
        max_age=page.settings.session_max_age,
        path=security.cookie_path(page.request),
        httponly=True,
        samesite="strict",
        secure=page.request.url.scheme == "https",
    )
    return response


async def logout(page: Page) -> Response:
    """``POST /logout``: end the session (CSRF-checked, like every form)."""
    if not security.check_csrf(page.request, page.form):
        return page.render("refused.html", status=403, message=security.MSG_CSRF, login=False)
    response = page.redirect("/login" if page.settings.tokens else "/runs")
    response.delete_cookie(security.SESSION_COOKIE, path=security.cookie_path(page.request))
    return response


def _equal(secret: str, given: str) -> bool:
    return hmac.compare_digest(secret.encode(), given.encode())


def _safe_next(page: Page, target: str) -> str:
    """Where to go after signing in: a path of this inspector only (no open redirect)."""
    root = page.url("/runs")
    base = root.removesuffix("/runs")
    parts = urlsplit(target)
    if (
        target.startswith(base + "/")
        and not target.startswith("//")
        and "\\" not in target
        and "://" not in target
        # Browsers drop tabs and newlines from a URL ("/\t/evil.example" is "//evil.example",
        # another site): no control character or space at all, and no scheme or host.
        and not any(ord(character) <= 0x20 or ord(character) == 0x7F for character in target)
        and not parts.scheme
        and not parts.netloc
    ):
        return target
    return root
