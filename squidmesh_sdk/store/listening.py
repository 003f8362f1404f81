"""PostgreSQL connections of their own for ``LISTEN``: opened, and their loss logged, alike.

Workers listen for queued work (:mod:`squidmesh_sdk.executors.listener`) and clients for
finished runs (:mod:`squidmesh_sdk.runtime.watcher`); each keeps one connection in ``LISTEN``
mode for as long as it runs, and opens it again when it is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from squidmesh_sdk.store.database import Database

__all__ = ["listening_connection", "loss_level"]


@contextmanager
def listening_connection(database: Database) -> Iterator[Any]:
    """A psycopg connection in autocommit, out of the engine's pool for good; closed on exit.

    Made through the engine, so that its connect arguments (SSL, a password, a ``creator``)
    apply, as they do to every other connection: one made from the URL alone failed, for
    good and silently, on an engine configured that way.
    """
    raw = database.engine.raw_connection()
    connection: Any = raw.driver_connection
    raw.detach()  # it stays in LISTEN mode: never back to the pool
    try:
        connection.autocommit = True
        yield connection
    finally:
        raw.close()


def loss_level(exc: BaseException) -> int:
    """How loud a lost listening connection is, as a logging level.

    A warning for the database or the network going away (the connection is opened again),
    an error for anything else (a bug).
    """
    import psycopg  # only PostgreSQL deployments listen

    return logging.WARNING if isinstance(exc, psycopg.Error | OSError) else logging.ERROR
