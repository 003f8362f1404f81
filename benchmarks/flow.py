"""Row 8: flow control on the database queue.

* **per-key limit**: 5-step runs spread over ``KEYS`` keys, each limited to ``KEY_LIMIT``
  running steps, on one worker of N threads. ``KEYS x KEY_LIMIT`` is at least N, so the limit
  never idles a thread: what the row shows against row 2 (the same runs, unlimited, same
  threads) is the cost of the limited claim (its locks and counts) and of steps that go
  through the queue instead of being continued. Statements and commits per step are counted.
* **rate limit**: the same runs unkeyed, on a queue limited to ``rate`` claims per second
  (every step is claimed then: a rate-limited queue gets no continuations). The row reports
  the steps/s achieved against that limit; over the window, at most ``rate`` per second plus
  the burst (``rate`` tokens) can start.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from benchmarks.results import Result
from benchmarks.squidmesh import CompletionObserver, StatementCounter, drain, start_runs
from benchmarks.targets import Target
from benchmarks.workflows import KEYED, LINEAR, LINEAR_STEPS, make_client
from squidmesh_sdk import RateLimit

__all__ = ["KEYS", "KEY_LIMIT", "key_payload", "keyed", "rate_limited"]

KEYS = 8
KEY_LIMIT = 2


def key_payload(index: int) -> dict[str, Any]:
    """The payload of keyed run ``index``: its key, one of ``KEYS`` in turn."""
    return {"key": f"k{index % KEYS}"}


def keyed(target: Target, runs: int, threads: int) -> Result:
    """Row 8: ``runs`` keyed 5-step runs over ``KEYS`` keys, limit ``KEY_LIMIT`` per key."""
    observer = CompletionObserver()
    with make_client(target.fresh(), [observer]) as client:
        client.migrate()
        start_runs(client, KEYED, runs, key_payload)
        observer.expect(runs)
        counter = StatementCounter(client.database.engine)
        elapsed = drain(client, observer, threads, counter)
    return Result(
        row=8,
        name=f"flow: key limit {KEY_LIMIT}, {KEYS} keys",
        workers=f"1 worker x {threads} threads",
        concurrency=threads,
        runs=runs,
        steps=runs * LINEAR_STEPS,
        seconds=elapsed,
        statements=counter.statements,
        commits=counter.commits,
    )


def rate_limited(target: Target, runs: int, threads: int, rate: int) -> Result:
    """Row 8: ``runs`` 5-step runs on a queue limited to ``rate`` claims a second."""
    observer = CompletionObserver()
    with make_client(target.fresh(), [observer]) as client:
        client.migrate()
        client.set_queue_limits("default", rate_limit=RateLimit(rate, per=timedelta(seconds=1)))
        start_runs(client, LINEAR, runs)
        observer.expect(runs)
        elapsed = drain(client, observer, threads)
    return Result(
        row=8,
        name=f"flow: queue rate limit {rate}/s",
        workers=f"1 worker x {threads} threads",
        concurrency=threads,
        runs=runs,
        steps=runs * LINEAR_STEPS,
        seconds=elapsed,
    )
