"""Step options that are values: retry policies and their backoff."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

__all__ = ["Backoff", "Duration", "Retry"]

Duration = float | int | timedelta
"""A length of time: seconds as a number, or a :class:`datetime.timedelta`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """How long to wait between attempts.

    Build one with :meth:`Retry.exponential` or :meth:`Retry.fixed`. The compiler checks the
    values; a ``Backoff`` itself does no validation so that every problem is reported at once.

    Attributes:
        kind: ``"exponential"`` (``min * 2**(n-1)`` capped at ``max``) or ``"fixed"``.
        min: The first delay.
        max: The largest delay.
        jitter: Fraction (0..1) of each delay that may be randomly removed, to spread retries
            of many runs; ``0`` keeps delays exact.
    """

    kind: Literal["exponential", "fixed"]
    min: Duration
    max: Duration
    jitter: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """A step's retry policy.

    Example:
        ``Retry(max_attempts=5, backoff=Retry.exponential(min=1, max=30))`` tries a step up to
        five times, waiting 1, 2, 4 and 8 seconds between attempts.

    Attributes:
        max_attempts: Total attempts including the first; ``1`` means no retry.
        backoff: The delay between attempts; ``None`` retries immediately.
    """

    max_attempts: int
    backoff: Backoff | None = None

    @staticmethod
    def exponential(*, min: Duration, max: Duration, jitter: float = 0.0) -> Backoff:
        """Delays of ``min * 2**(n-1)`` after the n-th failed attempt, capped at ``max``."""
        return Backoff(kind="exponential", min=min, max=max, jitter=jitter)

    @staticmethod
    def fixed(delay: Duration, *, jitter: float = 0.0) -> Backoff:
        """The same delay after every failed attempt."""
        return Backoff(kind="fixed", min=delay, max=delay, jitter=jitter)
