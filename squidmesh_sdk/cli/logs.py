"""How ``squidmesh worker`` shows what it does: readable console lines, or JSON for machines.

The library installs no logging handlers; the CLI does, for the worker it runs, unless the
application configured logging itself (then its handlers decide).

Console lines, one per thing that happened (the runtime's records carry an ``event`` field)::

    09:30:12  checkout 01a24f3c  capture_payment#1   started
    09:30:12  checkout 01a24f3c  capture_payment#1   failed after 3 ms: ValueError: declined
    09:30:12  checkout 01a24f3c  capture_payment#1   retry in 2 s
    09:30:14  checkout 01a24f3c                      run failed

Other records print as ``time [LEVEL] message  key=value ...`` (the level from WARNING up).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from squidmesh_sdk.cli import render

__all__ = ["LogFormat", "worker_logging"]

LogFormat = Literal["console", "json"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@contextlib.contextmanager
def worker_logging(level: str, stream: TextIO, log_format: LogFormat) -> Iterator[None]:
    """Log squidmesh's records at ``level``; to ``stream`` unless the app configured logging."""
    logger = logging.getLogger("squidmesh_sdk")
    previous = logger.level
    handler: logging.Handler | None = None
    if not logging.getLogger().handlers and not _real_handlers(logger):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
        if handler is not None:
            logger.removeHandler(handler)


def _real_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The logger's handlers, without the library's own ``NullHandler``."""
    return [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields (what ``extra=`` put on it)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


class ConsoleFormatter(logging.Formatter):
    """One readable line per runtime event; other records as text with ``key=value`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        event = extras.get("event")
        if isinstance(event, str) and "run_id" in extras:
            line = self._event_line(record, event, extras)
        elif record.getMessage() == "worker started":
            line = self._banner(record, extras)
        else:
            level = f"{record.levelname} " if record.levelno >= logging.WARNING else ""
            pairs = sorted(extras.items())
            fields = " ".join(f"{key}={render.compact(value)}" for key, value in pairs)
            text = f"{self._clock(record)}  {level}{record.getMessage()}"
            line = f"{text}  {fields}" if fields else text
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line

    @staticmethod
    def _clock(record: logging.LogRecord) -> str:
        return datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")

    def _event_line(self, record: logging.LogRecord, event: str, extras: Mapping[str, Any]) -> str:
        run = f"{extras.get('workflow', '?')} {str(extras['run_id'])[:8]}"
        step = extras.get("step")
        where = f"{step}#{extras.get('attempt')}" if step and extras.get("attempt") else step or ""
        return f"{self._clock(record)}  {run}  {where:<20}  {_what(event, record, extras)}"

    def _banner(self, record: logging.LogRecord, extras: Mapping[str, Any]) -> str:
        lines = [
            f"{self._clock(record)}  squidmesh worker {extras.get('worker')} started",
            f"  queues       {', '.join(extras.get('queues') or ())}",
            f"  concurrency  {extras.get('concurrency')}",
        ]
        for name, versions in (extras.get("workflows") or {}).items():
            lines.append(f"  workflow     {name} (versions: {', '.join(versions)})")
        lines.extend(
            f"  cron         {schedule['workflow']}.{schedule['trigger']} "
            f"{schedule['schedule']}, next {schedule['next']}"
            for schedule in extras.get("cron") or ()
        )
        if not extras.get("cron"):
            lines.append("  cron         none")
        return "\n".join(lines)


def _what(event: str, record: logging.LogRecord, extras: Mapping[str, Any]) -> str:
    """What happened, for a console line."""
    took = f" after {extras['duration_ms']:g} ms" if "duration_ms" in extras else ""
    error = extras.get("error")
    cause = ""
    if isinstance(error, Mapping):
        kind = str(error.get("type") or "").rsplit(".", 1)[-1]
        cause = f": {kind + ': ' if kind else ''}{error.get('message', '')}"
    if event == "step_started":
        return "started"
    if event == "step_completed":
        return f"completed{took}"
    if event == "step_failed":
        return f"failed{took}{cause}"
    if event == "retry_scheduled":
        return f"retry in {extras.get('delay', 0):g} s"
    if event == "compensation_completed":
        return f"compensated{took}"
    if event == "compensation_failed":
        return f"compensation failed{took}{cause}"
    return record.getMessage()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and every structured field."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, sort_keys=False)
