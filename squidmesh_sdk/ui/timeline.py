"""The attempts of a run on a time axis, as inline SVG (one bar per attempt).

A bar spans an attempt's start to its end (to now while it runs), coloured by its status; a
thin line before it spans the wait that preceded it (the queue, or the retry delay).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

from squidmesh_sdk.ui.present import css_slug, duration
from squidmesh_sdk.ui.run_view import AttemptRow

__all__ = ["MAX_ROWS", "render_timeline"]

MAX_ROWS = 300
LABEL_WIDTH = 190
CHART_WIDTH = 640
ROW_HEIGHT = 20
AXIS_HEIGHT = 22


def render_timeline(rows: Sequence[AttemptRow], start: datetime, end: datetime) -> Markup:
    """An ``<svg>`` of the first :data:`MAX_ROWS` attempts between ``start`` and ``end``."""
    shown = list(rows[:MAX_ROWS])
    span = max((end - start).total_seconds(), 0.001)

    def x(moment: datetime) -> float:
        offset = (moment - start).total_seconds() / span
        return LABEL_WIDTH + max(0.0, min(1.0, offset)) * CHART_WIDTH

    width = LABEL_WIDTH + CHART_WIDTH + 10
    height = AXIS_HEIGHT + len(shown) * ROW_HEIGHT + 6
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="attempts over time">'
    ]
    for tick in range(5):
        tx = LABEL_WIDTH + tick * CHART_WIDTH / 4
        parts.append(
            f'<line class="tick" x1="{tx:.1f}" y1="{AXIS_HEIGHT - 4}" x2="{tx:.1f}" '
            f'y2="{height}"/><text class="axis" x="{tx:.1f}" y="{AXIS_HEIGHT - 8}" '
            f'text-anchor="middle">+{escape(duration(span * tick / 4))}</text>'
        )
    for index, row in enumerate(shown):
        y = AXIS_HEIGHT + index * ROW_HEIGHT
        label = f"{row.step} #{row.attempt.number}"
        parts.append(
            f'<text class="row-label" x="{LABEL_WIDTH - 8}" y="{y + 14}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        x0 = x(row.started)
        x1 = max(x(row.ended or end), x0 + 2)
        if row.waited is not None and row.waited.total_seconds() > 0:
            wx = x(row.started - row.waited)
            parts.append(
                f'<line class="wait" x1="{wx:.1f}" y1="{y + 10}" x2="{x0:.1f}" y2="{y + 10}">'
                f"<title>{escape(row.waited_for)}: {escape(duration(row.waited))}</title></line>"
            )
        title = f"{label}: {row.attempt.status}, {duration(row.took)}"
        parts.append(
            f'<rect class="bar st-{css_slug(row.attempt.status)}" x="{x0:.1f}" y="{y + 3}" '
            f'width="{x1 - x0:.1f}" height="{ROW_HEIGHT - 6}" rx="2">'
            f"<title>{escape(title)}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above went through escape()
