"""Who may see the inspector and act through it: authentication, CSRF, response headers.

- **Authentication.** With an ``auth`` hook, the host decides: the hook returns the actor,
  ``None`` (refused: 401), or a response of its own. With ``token``, a request carries
  ``Authorization: Bearer <token>`` or the session cookie that the login form sets (the
  cookie holds a timestamp and an HMAC keyed by the token, never the token itself, and
  expires). With neither, the inspector is read-only and answers loopback clients only.
- **CSRF.** Every POST must carry the ``csrf_token`` form field equal to the ``squidmesh_csrf``
  cookie (random, ``HttpOnly``, ``SameSite=Strict``), and must not come from another origin
  (``Origin`` / ``Sec-Fetch-Site``).
- **Headers.** A strict Content-Security-Policy (scripts and styles from the inspector's own
  static files only), no framing, no sniffing, no caching, no referrer to other sites.

No secret ever travels in a URL: tokens go in a header, a form body or a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from squidmesh_sdk.ui.config import Actor, Settings

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "SESSION_COOKIE",
    "Identity",
    "Refusal",
    "authenticate",
    "check_csrf",
    "cookie_path",
    "csrf_token",
    "is_loopback",
    "secure_headers",
    "session_cookie",
    "token_actor",
]

SESSION_COOKIE = "squidmesh_session"
CSRF_COOKIE = "squidmesh_csrf"
CSRF_FIELD = "csrf_token"

MSG_HOOK_REFUSED = "You are not signed in: the application's authentication did not accept you."
MSG_TOKEN_NEEDED = "Sign in with the inspector's access token."  # noqa: S105 - a message
MSG_REMOTE_REFUSED = (
    "This inspector has no authentication configured, so it only answers requests from this "
    "machine (127.0.0.1), addressed to it as 127.0.0.1, localhost or [::1], not through a "
    "proxy. Give create_app auth= or token= to serve it to others."
)
MSG_CSRF = (
    "The form could not be verified (a missing or stale CSRF token, or a request from another "
    "site). Reload the page and try again."
)

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated request: its actor (``None``: a local, anonymous, read-only viewer)."""

    actor: Actor | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request that may not go on: the status, the message, and whether to offer a login."""

    status: int
    message: str
    login: bool = False


async def authenticate(request: Request, settings: Settings) -> Identity | Refusal | Response:
    """Who is asking, as the settings say to find out."""
    if settings.auth is not None:
        result = settings.auth(request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Response):
            return result
        if result is None or (isinstance(result, str | Mapping) and not result):
            return Refusal(401, MSG_HOOK_REFUSED)
        return Identity(result)
    if settings.tokens:
        actor = token_actor(request, settings)
        if actor is None:
            return Refusal(401, MSG_TOKEN_NEEDED, login=True)
        return Identity(actor)
    client = request.client
    if client is None or not is_loopback(client.host) or not _addressed_locally(request):
        return Refusal(403, MSG_REMOTE_REFUSED)
    return Identity(None)


_FORWARDING = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
"""Headers a proxy adds: through one, every client would seem to be this machine."""


def _addressed_locally(request: Request) -> bool:
    """Whether a request from this machine also names it, and came through no proxy.

    A page of another site that rebinds its name to 127.0.0.1 (DNS rebinding) reaches the
    inspector from this machine's browser, but names its own host; a proxy on this machine
    makes every client's request come from 127.0.0.1.
    """
    if any(name in request.headers for name in _FORWARDING):
        return False
    hostname = urlsplit("//" + request.headers.get("host", "")).hostname
    return hostname is not None and is_loopback(hostname)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_actor(request: Request, settings: Settings) -> Actor | None:
    """The actor of the bearer token or session cookie the request carries, if valid."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return _match_token(value.strip(), settings.tokens)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return _match_session(cookie, settings)
    return None


def _match_token(given: str, tokens: Mapping[str, Actor]) -> Actor | None:
    found: Actor | None = None
    for token, actor in tokens.items():  # compare with every token: constant time overall
        if hmac.compare_digest(given.encode(), token.encode()):
            found = actor
    return found


def session_cookie(token: str, now: float | None = None) -> str:
    """The session cookie's value for ``token``: ``<issued>.<hmac(token, issued)>``."""
    issued = str(int(time.time() if now is None else now))
    return f"{issued}.{_session_mac(token, issued)}"


def _session_mac(token: str, issued: str) -> str:
    return hmac.new(
        token.encode(), f"squidmesh-ui-session:{issued}".encode(), hashlib.sha256
    ).hexdigest()


def _match_session(cookie: str, settings: Settings) -> Actor | None:
    issued, _, mac = cookie.partition(".")
    if not issued.isdigit() or not mac:
        return None
    age = time.time() - int(issued)
    if not 0 <= age <= settings.session_max_age:
        return None
    found: Actor | None = None
    for token, actor in settings.tokens.items():
        if hmac.compare_digest(mac.encode(), _session_mac(token, issued).encode()):
            found = actor
    return found


def cookie_path(request: Request) -> str:
    """The path the inspector's cookies are scoped to: where it is mounted."""
    root = request.scope.get("root_path", "") or ""
    return root.rstrip("/") + "/"


def csrf_token(request: Request) -> str:
    """The request's CSRF token: the cookie's, or a new one :func:`secure_headers` will set."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if 32 <= len(existing) <= 128 and existing.replace("-", "").replace("_", "").isalnum():
        return existing
    fresh: str | None = getattr(request.state, "new_csrf", None)
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request.state.new_csrf = fresh
    return fresh


def check_csrf(request: Request, form: Mapping[str, str]) -> bool:
    """Whether a POST comes from one of the inspector's own forms."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin == "null":
        # Sent by privacy settings and sandboxed frames alike: only the browser's own
        # (unforgeable) Sec-Fetch-Site can vouch for such a request.
        if fetch_site != "same-origin":
            return False
    elif origin is not None and fetch_site != "same-origin":
        # Without the browser's word, the origin must be this host. (With it, the Host may
        # differ: a proxy in front of the inspector may rewrite it, as nginx does by default.)
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc.lower() != host.lower():
            return False
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = form.get(CSRF_FIELD, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), field.encode())


def secure_headers(request: Request, response: Response) -> Response:
    """Add the security headers, and the CSRF cookie when this request created one."""
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    fresh = getattr(request.state, "new_csrf", None)
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE,
            fresh,
            path=cookie_path(request),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response
