"""A context variable set for the duration of a ``with`` block (:class:`Scoped`).

The runtime passes several things down a delivery's call stack through context variables: the
clock, the continuation offer, the trace a payload carries, the concurrency of the steps being
queued, the group commit. Each is set for one block and reset after it, several times a step, so
this is a class rather than a ``@contextmanager`` generator (which costs a generator, its frame
and the ``contextlib`` wrapper at every use).
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["Scoped"]

T = TypeVar("T")


class Scoped(Generic[T]):
    """Set ``variable`` to ``value`` inside the ``with`` block; ``as`` gives ``value``.

    Each instance is used once, in one ``with`` statement.
    """

    __slots__ = ("_token", "_value", "_variable")

    def __init__(self, variable: ContextVar[T], value: T) -> None:
        self._variable = variable
        self._value = value
        self._token: Token[T] | None = None

    def __enter__(self) -> T:
        self._token = self._variable.set(self._value)
        return self._value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._token is not None  # noqa: S101 - entered before it exits
        self._variable.reset(self._token)
