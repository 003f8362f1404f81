"""A daemon thread that runs one pass of some duty every interval, or at once when woken.

The outbox relay and the cron scheduler run this way in processes that have no
:class:`~squidmesh_sdk.Worker` loop (Celery workers, a web app that relays). A pass that
raises is logged and retried with backoff, up to a minute: the database may be away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["PeriodicThread"]

logger = logging.getLogger("squidmesh_sdk.periodic")

_MAX_BACKOFF = 60.0


class PeriodicThread:
    """Runs ``duty`` on a thread of its own until stopped.

    Args:
        name: The thread's name (also in the log record of a failed pass).
        duty: One pass; its return value is ignored.
        interval: Seconds between two passes when nothing wakes the thread.
    """

    def __init__(self, name: str, duty: Callable[[], object], interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.name = name
        self.interval = interval
        self._duty = duty
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the thread is running."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread (idempotent).

        Raises:
            RuntimeError: the thread is still finishing a pass after :meth:`stop` timed out.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                if self._stopping.is_set():
                    raise RuntimeError(f"{self.name} is still stopping; try again later")
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run a pass now rather than at the end of the interval."""
        self._wake.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop after the current pass, waiting up to ``timeout`` seconds for it."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stopping.set()
            self._wake.set()
            thread.join(timeout)
            # A thread still finishing its pass stays known, so start() does not add another.
            if not thread.is_alive():
                self._thread = None

    def _run(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self._duty()
                backoff = 0.0
            except Exception:
                backoff = min(_MAX_BACKOFF, max(self.interval, backoff * 2))
                logger.warning("%s: pass failed; retrying", self.name, exc_info=True)
            self._wake.wait(backoff or self.interval)
