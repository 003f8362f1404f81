"""What one measurement produced, and the median of repeated measurements."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["Result", "median_result", "percentile"]


@dataclass(frozen=True, slots=True)
class Result:
    """One row of the table.

    Attributes:
        row: The row number (1 latency ... 6 raw limit ... 9 starts beside a busy worker).
        name: What was measured.
        workers: How it was executed (``4 threads``, ``2 processes x 2``).
        concurrency: Jobs processed at once (threads, or processes x threads).
        runs: Workflow runs executed.
        steps: Steps executed.
        seconds: Wall time of the measurement window.
        p50_ms, p99_ms: Latency percentiles: row 1 from calling ``start_run`` to completion,
            row 9 of the ``start_run`` call.
        start_p50_ms: Row 1: the p50 of the ``start_run`` call alone (its transaction).
        statements, commits: SQL statements and commits seen in the window (row 5).
    """

    row: int
    name: str
    workers: str
    concurrency: int
    runs: int
    steps: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    start_p50_ms: float | None = None
    statements: int | None = None
    commits: int | None = None

    @property
    def steps_per_s(self) -> float:
        """Steps completed per second."""
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    @property
    def runs_per_s(self) -> float:
        """Runs completed per second."""
        return self.runs / self.seconds if self.seconds > 0 else 0.0

    @property
    def statements_per_step(self) -> float | None:
        """Statements per step, when they were counted."""
        return None if self.statements is None else self.statements / self.steps

    @property
    def commits_per_step(self) -> float | None:
        """Commits per step, when they were counted."""
        return None if self.commits is None else self.commits / self.steps

    def to_dict(self) -> dict[str, Any]:
        """The result with its derived rates, for ``--json``."""
        data = asdict(self)
        data.update(
            steps_per_s=self.steps_per_s,
            runs_per_s=self.runs_per_s,
            statements_per_step=self.statements_per_step,
            commits_per_step=self.commits_per_step,
        )
        return data


def median_result(samples: list[Result]) -> Result:
    """Each numeric field's median over repeated measurements of the same row."""
    first = samples[0]
    if len(samples) == 1:
        return first
    changes: dict[str, Any] = {}
    for item in fields(Result):
        if item.name in ("row", "name", "workers", "concurrency", "runs", "steps"):
            continue
        values = [getattr(sample, item.name) for sample in samples]
        if any(value is None for value in values):
            continue
        middle = statistics.median(values)
        changes[item.name] = round(middle) if isinstance(values[0], int) else middle
    return replace(first, **changes)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
