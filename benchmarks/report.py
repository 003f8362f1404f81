"""The table, the ratio to the raw limit, and the targets of the performance issue."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from benchmarks.results import Result

__all__ = ["Check", "Summary", "render_json", "render_table", "summarize"]

RATIO_TARGET = 0.50
"""PostgreSQL: our best steps/s as a fraction of the raw two-transaction limit."""
COMMITS_TARGET = 1.2
"""Commits per step, at most (row 5)."""
STATEMENTS_TARGET = 5.0
"""Statements per step, at most (row 5)."""
LATENCY_TARGET_MS = {"postgres": 10.0, "sqlite": 5.0}
"""p50 of one 5-step run, in milliseconds, at most, per database."""
SQLITE_TARGET = 2000.0
"""SQLite (WAL): steps/s, at least."""

COLUMNS = (
    "#",
    "measurement",
    "workers",
    "runs",
    "steps",
    "seconds",
    "steps/s",
    "runs/s",
    "p50 ms",
    "p99 ms",
    "stmts/step",
    "commits/step",
)


@dataclass(frozen=True, slots=True)
class Check:
    """One target: what it demands, the measured value, and whether it holds.

    ``passed`` is ``None`` when the target is about the other database.
    """

    target: str
    measured: str
    passed: bool | None

    @property
    def marker(self) -> str:
        """``PASS``, ``FAIL`` or ``n/a``."""
        return "n/a" if self.passed is None else "PASS" if self.passed else "FAIL"


@dataclass(frozen=True, slots=True)
class Summary:
    """Our best throughput against the raw limit, and the target checks."""

    ours: Result | None
    raw: Result | None
    ratio: float | None
    counted: Result | None
    checks: tuple[Check, ...]


def _best(results: Sequence[Result], rows: tuple[int, ...]) -> Result | None:
    """The result of ``rows`` with the most steps/s."""
    candidates = [result for result in results if result.row in rows]
    return max(candidates, key=lambda result: result.steps_per_s, default=None)


TRACING_TARGET = 0.10
"""Recording spans with the SDK should cost less than this share of the throughput."""


def summarize(db: str, results: Sequence[Result]) -> Summary:
    """Compare our best (rows 2 and 3) with the raw best (row 6); check the targets."""
    ours = _best(results, (2, 3))
    raw = _best(results, (6,))
    ratio = ours.steps_per_s / raw.steps_per_s if ours and raw and raw.steps_per_s else None
    counted = next((r for r in results if r.row == 2 and r.commits is not None), None)
    latency = next((result for result in results if result.row == 1), None)
    checks = []
    checks.append(
        Check(
            f"PostgreSQL steps/s >= {RATIO_TARGET:.0%} of the raw limit",
            "-" if ratio is None else f"{ratio:.0%}",
            (ratio is not None and ratio >= RATIO_TARGET) if db == "postgres" else None,
        )
    )
    commits = counted.commits_per_step if counted is not None else None
    checks.append(
        Check(
            f"commits per step <= {COMMITS_TARGET:g}",
            "-" if commits is None else f"{commits:.2f}",
            commits is not None and commits <= COMMITS_TARGET,
        )
    )
    statements = counted.statements_per_step if counted is not None else None
    checks.append(
        Check(
            f"statements per step <= {STATEMENTS_TARGET:g}",
            "-" if statements is None else f"{statements:.2f}",
            statements is not None and statements <= STATEMENTS_TARGET,
        )
    )
    p50 = latency.p50_ms if latency is not None else None
    limit = LATENCY_TARGET_MS.get(db, LATENCY_TARGET_MS["postgres"])
    checks.append(
        Check(
            f"p50 of one 5-step run <= {limit:g} ms",
            "-" if p50 is None else f"{p50:.1f} ms",
            p50 is not None and p50 <= limit,
        )
    )
    checks.append(
        Check(
            f"SQLite (WAL) steps/s >= {SQLITE_TARGET:,.0f}",
            "-" if ours is None else f"{ours.steps_per_s:,.0f}",
            (ours is not None and ours.steps_per_s >= SQLITE_TARGET) if db == "sqlite" else None,
        )
    )
    off = next((r for r in results if r.row == 7 and r.name.startswith("tracing off")), None)
    on = next((r for r in results if r.row == 7 and r.name.startswith("tracing on")), None)
    cost = 1 - on.steps_per_s / off.steps_per_s if on and off and off.steps_per_s else None
    checks.append(
        Check(
            f"tracing costs < {TRACING_TARGET:.0%} of steps/s",
            "-" if cost is None else f"{cost:.0%}",
            cost is not None and cost < TRACING_TARGET,
        )
    )
    return Summary(ours=ours, raw=raw, ratio=ratio, counted=counted, checks=tuple(checks))


def _number(value: float | None, digits: int = 0) -> str:
    """A table cell: ``-`` for nothing, else the value with thousands separators."""
    return "-" if value is None else f"{value:,.{digits}f}"


def _cells(result: Result, *, counts_only: bool = False) -> list[str]:
    """The table cells of one result (``counts_only``: row 5's statements and commits)."""
    if counts_only:
        return [
            str(result.row),
            result.name,
            result.workers,
            *(["-"] * 7),
            _number(result.statements_per_step, 2),
            _number(result.commits_per_step, 2),
        ]
    rates = result.row != 1  # row 9's: the worker's steps completed beside the starts
    return [
        str(result.row),
        result.name,
        result.workers,
        str(result.runs),
        str(result.steps),
        _number(result.seconds, 2),
        _number(result.steps_per_s) if rates else "-",
        _number(result.runs_per_s, 1) if rates else "-",
        _number(result.p50_ms, 1),
        _number(result.p99_ms, 1),
        # Row 8 counts its own statements and commits (row 5 shows row 2's).
        _number(result.statements_per_step, 2) if result.row == 8 else "-",
        _number(result.commits_per_step, 2) if result.row == 8 else "-",
    ]


def _rows(results: Sequence[Result], summary: Summary) -> list[list[str]]:
    """Every table row in order, row 5 derived from the counted row-2 measurement."""
    rows = [_cells(result) for result in results if result.row < 5]
    if summary.counted is not None:
        counted = replace(summary.counted, row=5, name="statements, commits per step")
        rows.append(_cells(counted, counts_only=True))
    rows.extend(_cells(result) for result in results if result.row >= 6)
    return rows


def _align(rows: list[list[str]]) -> list[str]:
    """The rows as lines, text columns left-aligned, numbers right-aligned."""
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if index in (1, 2) else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def ratio_line(summary: Summary) -> str:
    """``ratio: squidmesh best ... / raw best ... = NN%``."""
    if summary.ours is None or summary.raw is None or summary.ratio is None:
        return "ratio: not measured"
    return (
        f"ratio: squidmesh best {summary.ours.steps_per_s:,.0f} steps/s "
        f"({summary.ours.workers}) / raw limit {summary.raw.steps_per_s:,.0f} steps/s "
        f"({summary.raw.workers}) = {summary.ratio:.0%}"
    )


def render_table(header: Sequence[str], results: Sequence[Result], summary: Summary) -> str:
    """The header, the aligned table, the ratio line and the targets, as plain text."""
    table = _align([list(COLUMNS), *_rows(results, summary)])
    rule = "-" * max(len(line) for line in table)
    lines = [*header, "", table[0], rule, *table[1:], "", ratio_line(summary), "targets:"]
    lines.extend(
        f"  [{check.marker:>4}] {check.target}: {check.measured}" for check in summary.checks
    )
    return "\n".join(lines)


def render_json(document: dict[str, Any], results: Sequence[Result], summary: Summary) -> str:
    """Everything in the table, and every sample of every round, as a JSON document."""
    payload = {
        **document,
        "rows": [result.to_dict() for result in results],
        "ours_best": summary.ours.to_dict() if summary.ours is not None else None,
        "raw_best": summary.raw.to_dict() if summary.raw is not None else None,
        "ratio": summary.ratio,
        "targets": [{**asdict(check), "marker": check.marker} for check in summary.checks],
    }
    return json.dumps(payload, indent=2)
