"""Serving the inspector alone, for ``squidmesh ui``: uvicorn on one host and port."""

from __future__ import annotations

from starlette.applications import Starlette

__all__ = ["serve"]


def serve(app: Starlette, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn until interrupted (Ctrl-C, SIGTERM).

    Raises:
        ImportError: uvicorn is not installed (it comes with the ``ui`` extra).
    """
    import uvicorn  # only the standalone server needs it; a host mounting the app does not

    # No proxy headers: the client address the loopback check reads must be the real one.
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False)
