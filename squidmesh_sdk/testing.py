"""A test harness for code that uses squidmesh: a fake clock and an in-process environment.

```python
from squidmesh_sdk.testing import WorkflowEnvironment

def test_retry_then_success():
    with WorkflowEnvironment([my_workflow]) as env:
        run = env.client.start_run(my_workflow, {"order_id": "o-1"})
        env.run_until_idle()               # skips over retry delays and waits at once
        assert env.client.inspect_run(run.id).status == "completed"
```

The environment keeps its state in a temporary SQLite file (or a database you name), delivers
work with an :class:`~squidmesh_sdk.executors.InlineExecutor`, and reads time from a
:class:`FakeClock` that only moves when the test moves it.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from squidmesh_sdk.client import Client
from squidmesh_sdk.definition.workflow import Workflow
from squidmesh_sdk.executors.inline import InlineExecutor
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.port.executor import DispatchMetadata
from squidmesh_sdk.runtime.events import Observer, RunEvent
from squidmesh_sdk.store.database import Transaction
from squidmesh_sdk.store.records import Run

__all__ = ["EventRecorder", "FakeClock", "TestExecutor", "WorkflowEnvironment"]

DEFAULT_START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    """A clock that stands still until told to move.

    Args:
        start: The initial time (aware); 2026-01-01 09:00 UTC by default.
    """

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current fake time."""
        with self._lock:
            return self._now

    def advance(self, delta: float | timedelta) -> datetime:
        """Move time forward by ``delta`` (seconds or a timedelta); return the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += step
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (aware, not earlier than now)."""
        with self._lock:
            if moment.tzinfo is None or moment < self._now:
                raise ValueError("set() takes an aware datetime no earlier than now")
            self._now = moment.astimezone(UTC)


class TestExecutor(InlineExecutor):
    """An :class:`InlineExecutor` that records what it was asked to do and can refuse on cue.

    Attributes:
        dispatched: Every payload accepted, in order (including ones that were rolled back).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, *, run_immediately: bool = True) -> None:
        super().__init__(run_immediately=run_immediately)
        self.dispatched: list[dict[str, Any]] = []
        self._failures: list[tuple[str, BaseException]] = []

    def fail_next(
        self,
        times: int = 1,
        error: BaseException | None = None,
        *,
        kind: Literal["any", "step", "compensation"] = "any",
    ) -> None:
        """Make the next ``times`` enqueue calls (of ``kind``) raise ``error``.

        The default error is ``ConnectionError("executor unavailable")``.
        """
        for _ in range(times):
            self._failures.append((kind, error or ConnectionError("executor unavailable")))

    def enqueue_step(
        self, tx: Transaction, run: Run, step: str, *, schedule_in: float | None = None
    ) -> DispatchMetadata:
        """Record and queue one step, unless told to fail."""
        self._maybe_fail("step")
        self.dispatched.append({"kind": "step", "run_id": run.id, "step": step})
        return super().enqueue_step(tx, run, step, schedule_in=schedule_in)

    def enqueue_steps(
        self,
        tx: Transaction,
        run: Run,
        steps: Sequence[str],
        *,
        schedule_in: float | None = None,
    ) -> Sequence[DispatchMetadata]:
        """Record and queue a batch, unless told to fail."""
        self._maybe_fail("step")
        self.dispatched.extend({"kind": "step", "run_id": run.id, "step": s} for s in steps)
        return super().enqueue_steps(tx, run, steps, schedule_in=schedule_in)

    def enqueue_compensation(self, tx: Transaction, run: Run) -> DispatchMetadata:
        """Record and queue a compensation, unless told to fail."""
        self._maybe_fail("compensation")
        self.dispatched.append({"kind": "compensation", "run_id": run.id})
        return super().enqueue_compensation(tx, run)

    def _maybe_fail(self, kind: str) -> None:
        for index, (wanted, error) in enumerate(self._failures):
            if wanted in ("any", kind):
                del self._failures[index]
                raise error


class EventRecorder:
    """An observer that keeps every runtime event, for assertions."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: RunEvent) -> None:
        """Keep ``event``."""
        with self._lock:
            self.events.append(event)

    def of_type(self, kind: type[Any]) -> list[Any]:
        """The recorded events of one type."""
        with self._lock:
            return [event for event in self.events if isinstance(event, kind)]


class WorkflowEnvironment:
    """A ready-to-use client on a migrated database, an in-process executor and a fake clock.

    Args:
        workflows: The workflows under test.
        database: A database URL; a temporary SQLite file (deleted on close) by default.
        start: The fake clock's initial time.
        run_immediately: Deliver work as soon as it is committed (default), or only when the
            test calls :meth:`run_due` / :meth:`advance` / :meth:`run_until_idle`.
        observers: Extra observers; an :class:`EventRecorder` is always attached as
            :attr:`events`.
        stale_step_timeout: Passed to the :class:`~squidmesh_sdk.Client`.
    """

    def __init__(
        self,
        workflows: Iterable[Workflow | WorkflowDefinition],
        *,
        database: str | None = None,
        start: datetime = DEFAULT_START,
        run_immediately: bool = True,
        observers: Iterable[Observer] = (),
        stale_step_timeout: float | None = None,
    ) -> None:
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if database is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="squidmesh-test-")
            database = f"sqlite:///{Path(self._tempdir.name) / 'squidmesh.db'}"
        self.clock = FakeClock(start)
        self.executor = TestExecutor(run_immediately=run_immediately)
        self.events = EventRecorder()
        self.client = Client(
            database,
            workflows,
            executor=self.executor,
            clock=self.clock,
            observers=[self.events, *observers],
            stale_step_timeout=stale_step_timeout,
        )
        try:
            self.client.migrate()
        except BaseException:
            self.close()
            raise

    def start_run(
        self,
        workflow: str | Workflow | WorkflowDefinition,
        payload: Mapping[str, Any] | None = None,
        *,
        trigger: str | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a run (and, with ``run_immediately``, run it as far as it can go now)."""
        return self.client.start_run(
            workflow, payload, trigger=trigger, idempotency_key=idempotency_key
        )

    def run_due(self) -> int:
        """Deliver every job due at the current fake time; return how many ran."""
        return self.executor.run_due()

    def advance(self, delta: float | timedelta) -> int:
        """Move the clock forward and deliver what became due; return how many jobs ran."""
        self.clock.advance(delta)
        return self.run_due()

    def run_until_idle(self, *, max_jobs: int = 10_000) -> int:
        """Deliver work, jumping the clock to each next delayed job, until nothing is queued.

        Raises:
            RuntimeError: more than ``max_jobs`` jobs ran (a workflow that never settles).
        """
        ran = 0
        while True:
            ran += self.run_due()
            due = self.executor.next_due()
            if due is None:
                return ran
            if ran > max_jobs:
                raise RuntimeError(f"more than {max_jobs} jobs ran; the workflow never settles")
            if due > self.clock.now():
                self.clock.set(due)

    def close(self) -> None:
        """Close the client and delete the temporary database."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> WorkflowEnvironment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
