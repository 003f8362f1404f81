"""How values look on the inspector's pages: times, durations, statuses, actors and JSON.

Everything that returns :class:`~markupsafe.Markup` escapes every value it embeds; the rest
returns plain text, which the templates escape (Jinja autoescape is always on).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

__all__ = [
    "actor_text",
    "ago",
    "css_slug",
    "duration",
    "error_summary",
    "humanize",
    "json_html",
    "one_line",
    "short_id",
    "step_base",
    "time_text",
    "trace_id",
]

_SLUG = re.compile(r"[^a-z0-9_-]+")
JSON_LIMIT = 20_000  # characters of one JSON document shown before it is cut


def css_slug(value: object) -> str:
    """A CSS class fragment for any status or kind: lower case, safe characters only."""
    return _SLUG.sub("-", str(value).lower()).strip("-") or "unknown"


def step_base(key: str) -> str:
    """The declared step a step-run key belongs to: ``charge@2`` and ``charge[3]`` -> ``charge``.

    Step names are identifiers (letters, digits, ``_`` and ``-``), so whatever follows the
    first ``@`` or ``[`` marks an iteration or an element of that step.
    """
    for index, char in enumerate(key):
        if char in "@[":
            return key[:index] or key
    return key


def short_id(run_id: object) -> str:
    """The last 8 hex digits of a run id, enough to tell runs apart on one page.

    Not the first: run ids are time-ordered (UUIDv7), so runs started within the same
    minutes share their first digits.
    """
    return str(run_id).replace("-", "")[-8:]


def time_text(value: datetime | None) -> str:
    """``2026-01-01 09:00:03 UTC`` (``-`` for none)."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | timedelta | None) -> str:
    """A human duration: ``350 ms``, ``2.4 s``, ``3 min 4 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if seconds is None:
        return "-"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def ago(value: datetime | None, now: datetime) -> str:
    """``3 min 4 s ago`` (``-`` for none)."""
    if value is None:
        return "-"
    return f"{duration(now - value)} ago"


def one_line(text: str) -> str:
    """An error message on one line: later lines are joined with ``"; "``."""
    lines = [line.strip().removeprefix("- ") for line in str(text).splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")


def humanize(name: str) -> str:
    """``wait_for_retry`` -> ``wait for retry``: an identifier as words."""
    return str(name).replace("_", " ")


def actor_text(actor: object) -> str:
    """An actor as one line: a name as it is, a mapping by its name / email / id."""
    if actor is None:
        return "-"
    if isinstance(actor, Mapping):
        for key in ("name", "email", "id", "user", "sub"):
            if isinstance(actor.get(key), str) and actor[key]:
                return str(actor[key])
        return json.dumps(dict(actor), sort_keys=True, default=str)
    return str(actor)


def error_summary(error: object) -> str:
    """``type: message`` of a stored error record (``-`` for none).

    A redactor may have replaced the record with something else (a mask): shown as text.
    """
    if not error:
        return "-"
    if not isinstance(error, Mapping):
        return str(error)
    message = error.get("message")
    kind = error.get("type") or error.get("kind")
    text = str(message) if message not in (None, "") else ""
    if kind:
        return f"{kind}: {text}" if text else str(kind)
    return text or json.dumps(dict(error), sort_keys=True, default=str)[:200]


def trace_id(trace_context: Mapping[str, Any] | None) -> str | None:
    """The 32-hex trace id of a stored W3C trace context, if it holds a valid one."""
    if not trace_context:
        return None
    parent = trace_context.get("traceparent")
    if not isinstance(parent, str):
        return None
    parts = parent.split("-")
    if len(parts) < 4 or not re.fullmatch(r"[0-9a-f]{32}", parts[1]) or set(parts[1]) == {"0"}:
        return None
    return parts[1]


def json_html(value: Any, run_link: Callable[[str], str] | None = None) -> Markup:
    """A JSON value as escaped, indented HTML; run ids under ``*run_id`` keys become links.

    Args:
        value: Any JSON-like value (mappings, sequences, scalars; other objects as text).
        run_link: Maps a run id to its page's URL; ``None`` links nothing.
    """
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > JSON_LIMIT:
        cut = text[:JSON_LIMIT]
        return Markup(  # noqa: S704 - escaped
            f"{escape(cut)}\n… ({len(text) - JSON_LIMIT} more characters not shown)"
        )
    if run_link is None:
        return escape(text)
    # Link a quoted UUID that follows a "...run_id": key; everything else is escaped as text.
    pattern = re.compile(r'("[^"\n]*run_id": )"([0-9a-fA-F-]{36})"')
    out: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        try:
            uuid.UUID(match.group(2))
        except ValueError:
            continue
        out.append(str(escape(text[position : match.start()])))
        out.append(str(escape(match.group(1))))
        href = escape(run_link(match.group(2)))
        out.append(f'&#34;<a href="{href}">{escape(match.group(2))}</a>&#34;')
        position = match.end()
    out.append(str(escape(text[position:])))
    return Markup("".join(out))  # noqa: S704 - every piece was escaped above
