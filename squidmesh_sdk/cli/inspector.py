"""``squidmesh ui``: serve the web run inspector (:mod:`squidmesh_sdk.ui`) on one address.

It binds 127.0.0.1:8787 by default. Serving on any other address needs authentication: an
``--auth module:callable`` hook, or a token in ``SQUIDMESH_UI_TOKEN`` (read from the
environment, never from the command line, where other users of the machine could see it).
Without either the inspector is read-only; with one, actions are enabled unless
``--read-only``.
"""

from __future__ import annotations

import argparse
import os

from squidmesh_sdk.cli.app import load_attribute
from squidmesh_sdk.cli.commands import Context
from squidmesh_sdk.cli.errors import EXIT_OK, CommandFailed, UsageError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MSG_AUTH_NOT_CALLABLE",
    "MSG_NEEDS_EXTRA",
    "MSG_REMOTE_NEEDS_AUTH",
    "TOKEN_ENV_VAR",
    "ui",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
TOKEN_ENV_VAR = "SQUIDMESH_UI_TOKEN"  # noqa: S105 - the name of the variable

MSG_NEEDS_EXTRA = (
    "the inspector needs the optional 'ui' dependencies ({error}): pip install 'squidmesh-sdk[ui]'"
)
MSG_REMOTE_NEEDS_AUTH = (
    "serving the inspector on {host} (not a loopback address) needs authentication: pass "
    "--auth module:callable or set {env}"
)
MSG_AUTH_NOT_CALLABLE = "--auth {spec!r} is a {kind}, not a callable"
MSG_SERVER_FAILED = "the inspector could not serve on {host}:{port} (see the log above)"


def ui(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh ui [--host H] [--port P] [--auth M:F] [--read-only] ...``."""
    try:
        from squidmesh_sdk.ui import create_app, redact_keys, server
        from squidmesh_sdk.ui.security import is_loopback
    except ImportError as exc:
        raise UsageError(MSG_NEEDS_EXTRA.format(error=exc.name or exc)) from exc
    auth = None
    if args.auth:
        auth = load_attribute(args.auth)
        if not callable(auth):
            raise UsageError(
                MSG_AUTH_NOT_CALLABLE.format(spec=args.auth, kind=type(auth).__qualname__)
            )
    token = os.environ.get(TOKEN_ENV_VAR, "").strip() or None
    if not is_loopback(args.host) and auth is None and token is None:
        raise UsageError(MSG_REMOTE_NEEDS_AUTH.format(host=args.host, env=TOKEN_ENV_VAR))
    client = ctx.client()
    patterns = [p.strip() for p in (args.redact or "").split(",") if p.strip()]
    app = create_app(
        client,
        auth=auth,  # type: ignore[arg-type]  # checked callable above; its signature is the app's
        token=token,
        read_only=True if args.read_only else None,
        redact=redact_keys(*patterns) if patterns else None,
        trace_url=args.trace_url,
    )
    mode = "read-only" if args.read_only or (auth is None and token is None) else "actions on"
    shown = f"[{args.host}]" if ":" in args.host else args.host
    ctx.note(f"inspector on http://{shown}:{args.port}/ ({mode}); Ctrl-C stops it")
    try:
        server.serve(app, host=args.host, port=args.port)
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        if exc.code:
            raise CommandFailed(MSG_SERVER_FAILED.format(host=args.host, port=args.port)) from exc
    return EXIT_OK
