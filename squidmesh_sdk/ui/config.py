"""The inspector's settings, checked once when the app is created."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from squidmesh_sdk import errors
from squidmesh_sdk.ui.redaction import Redactor

__all__ = ["MIN_TOKEN_LENGTH", "TOKEN_ACTOR", "Actor", "AuthHook", "Settings", "build_settings"]

Actor = str | Mapping[str, Any]
"""Who acts: a name, or a mapping of JSON values (recorded as given in the audit trail)."""

AuthHook = Callable[[Request], Actor | Response | Awaitable[Actor | Response | None] | None]
"""The host's authentication: given the request, return the actor, ``None`` to refuse it, or
a response to send instead (e.g. a redirect to the host's login page). May be ``async``."""

MIN_TOKEN_LENGTH = 16
TOKEN_ACTOR = "ui-token"  # noqa: S105 - an actor name, not a secret
"""The actor recorded for actions taken with a single shared ``token``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What :func:`~squidmesh_sdk.ui.create_app` was given, checked."""

    auth: AuthHook | None
    tokens: Mapping[str, Actor]
    read_only: bool
    redact: Redactor | None
    trace_url: str | None
    title: str
    refresh_seconds: float
    page_size: int
    session_max_age: int

    @property
    def authenticated(self) -> bool:
        """Whether requests must authenticate (an auth hook or a token is configured)."""
        return self.auth is not None or bool(self.tokens)


def build_settings(
    *,
    auth: AuthHook | None,
    token: str | Mapping[str, Actor] | None,
    read_only: bool | None,
    redact: Redactor | None,
    trace_url: str | None,
    title: str,
    refresh_seconds: float,
    page_size: int,
    session_max_age: int,
) -> Settings:
    """Check the arguments of ``create_app``.

    Raises:
        InvalidArgument: an argument of the wrong type or range, or actions enabled
            (``read_only=False``) with neither ``auth`` nor ``token``.
    """
    if auth is not None and not callable(auth):
        raise errors.InvalidArgument("auth", f"auth must be a callable, got {auth!r}")
    if auth is not None and token is not None:
        raise errors.InvalidArgument(
            "token", "give auth= (the host's authentication) or token=, not both"
        )
    tokens = _tokens(token)
    authenticated = auth is not None or bool(tokens)
    if read_only is None:
        read_only = not authenticated
    elif not isinstance(read_only, bool):
        raise errors.InvalidArgument("read_only", f"read_only must be a bool, got {read_only!r}")
    if not read_only and not authenticated:
        raise errors.InvalidArgument(
            "read_only",
            "actions record who took them: enabling them (read_only=False) needs auth= (a "
            "callable returning the request's actor) or token=",
        )
    if redact is not None and not callable(redact):
        raise errors.InvalidArgument("redact", f"redact must be a callable, got {redact!r}")
    if trace_url is not None and (
        not isinstance(trace_url, str)
        or "{trace_id}" not in trace_url
        or not trace_url.startswith(("https://", "http://", "/"))
    ):
        raise errors.InvalidArgument(
            "trace_url",
            "trace_url must be an http(s) URL or a path holding {trace_id}, e.g. "
            f"'https://tempo.example/trace/{{trace_id}}'; got {trace_url!r}",
        )
    if not isinstance(title, str) or not title.strip():
        raise errors.InvalidArgument("title", f"title must be non-empty text, got {title!r}")
    if (
        isinstance(refresh_seconds, bool)
        or not isinstance(refresh_seconds, int | float)
        or not (refresh_seconds == 0 or refresh_seconds >= 1)
    ):
        raise errors.InvalidArgument(
            "refresh_seconds",
            f"refresh_seconds must be 0 (off) or at least 1, got {refresh_seconds!r}",
        )
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 500:
        raise errors.InvalidArgument(
            "page_size", f"page_size must be an integer from 1 to 500, got {page_size!r}"
        )
    if (
        isinstance(session_max_age, bool)
        or not isinstance(session_max_age, int)
        or session_max_age < 60
    ):
        raise errors.InvalidArgument(
            "session_max_age",
            f"session_max_age must be a whole number of seconds >= 60, got {session_max_age!r}",
        )
    return Settings(
        auth=auth,
        tokens=MappingProxyType(tokens),
        read_only=read_only,
        redact=redact,
        trace_url=trace_url,
        title=title.strip(),
        refresh_seconds=float(refresh_seconds),
        page_size=page_size,
        session_max_age=session_max_age,
    )


def _tokens(token: str | Mapping[str, Actor] | None) -> dict[str, Actor]:
    if token is None:
        return {}
    pairs = {token: TOKEN_ACTOR} if isinstance(token, str) else token
    if not isinstance(pairs, Mapping) or not pairs:
        raise errors.InvalidArgument(
            "token", "token must be a string or a non-empty mapping of tokens to actors"
        )
    checked: dict[str, Actor] = {}
    for secret, actor in pairs.items():
        if not isinstance(secret, str) or len(secret.strip()) < MIN_TOKEN_LENGTH:
            raise errors.InvalidArgument(
                "token", f"a token must be text of at least {MIN_TOKEN_LENGTH} characters"
            )
        if not (isinstance(actor, str) and actor.strip()) and not (
            isinstance(actor, Mapping) and actor
        ):
            raise errors.InvalidArgument(
                "token", "each token's actor must be a non-empty name or mapping"
            )
        checked[secret] = actor
    return checked
