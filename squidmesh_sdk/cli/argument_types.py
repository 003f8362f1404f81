"""The ``squidmesh`` command line's argument types: each parses one argument or says why not.

An argument that does not parse is an ``argparse.ArgumentTypeError`` whose message (one of the
``MSG_*`` templates) names the value and what was expected; the parser turns it into a one-line
usage error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from squidmesh_sdk import errors
from squidmesh_sdk.arguments import MAX_IDEMPOTENCY_KEY
from squidmesh_sdk.definition.flow import RateLimit, priority_problem
from squidmesh_sdk.store.records import canonical_run_id

__all__ = [
    "MSG_BAD_DURATION",
    "MSG_BAD_IDEMPOTENCY_KEY",
    "MSG_BAD_JOB_ID",
    "MSG_BAD_JSON",
    "MSG_BAD_PRIORITY",
    "MSG_BAD_RATE",
    "MSG_BAD_RUN_ID",
    "MSG_BLANK_QUEUE",
    "MSG_NOT_AN_OBJECT",
    "MSG_NOT_A_PORT",
    "MSG_NOT_FINITE",
    "MSG_NOT_POSITIVE_INT",
    "MSG_NOT_POSITIVE_NUMBER",
    "MSG_UNREADABLE",
    "duration",
    "idempotency_key",
    "job_id",
    "json_object",
    "port",
    "positive_float",
    "positive_int",
    "priority",
    "queue_name",
    "rate_limit",
    "run_id",
]

MSG_BAD_RUN_ID = "{value!r} is not a run id (a UUID)"
MSG_BAD_JOB_ID = "{value!r} is not a job id (a number, as 'jobs list' prints it)"
MSG_NOT_A_PORT = "{value!r} is not a port (1 to 65535)"
MSG_BLANK_QUEUE = "a queue name cannot be blank"
MSG_BAD_PRIORITY = "{value!r} is not a priority (an integer from -1000 to 1000)"
MSG_BAD_RATE = (
    "{value!r} is not a rate: COUNT/PERIOD with a period in seconds, minutes or hours "
    "(100/1m, 5/s, 10/30s, 1000/1h)"
)
MSG_NOT_POSITIVE_INT = "{value!r} is not a positive integer"
MSG_NOT_POSITIVE_NUMBER = "{value!r} is not a positive number"
MSG_BAD_JSON = "not valid JSON ({error})"
MSG_NOT_AN_OBJECT = "must be a JSON object, got {kind}"
MSG_UNREADABLE = "cannot read {path!r}: {error}"
MSG_NOT_FINITE = "JSON {value} is not allowed"
MSG_BAD_IDEMPOTENCY_KEY = (
    "an idempotency key is non-empty text of at most {limit} characters without NUL, "
    "got {length} characters"
)
MSG_BAD_DURATION = (
    "{value!r} is not a duration: a whole number above 0 followed by d (days), h (hours) "
    "or m (minutes), such as 30d, 12h or 90m"
)


def job_id(value: str) -> int:
    """A job id argument: a positive integer.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    return _at_least_one(value, MSG_BAD_JOB_ID)


def port(value: str) -> int:
    """A TCP port argument: 1 to 65535.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    number = positive_int(value)
    if number > 65535:
        raise argparse.ArgumentTypeError(MSG_NOT_A_PORT.format(value=value))
    return number


def run_id(value: str) -> str:
    """A run id argument, in canonical form.

    Raises:
        argparse.ArgumentTypeError: not a UUID.
    """
    try:
        return canonical_run_id(value)
    except errors.InvalidRunId:
        raise argparse.ArgumentTypeError(MSG_BAD_RUN_ID.format(value=value)) from None


def idempotency_key(value: str) -> str:
    """An idempotency key argument: non-empty, at most 200 characters.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    if not value or len(value) > MAX_IDEMPOTENCY_KEY or "\x00" in value:
        raise argparse.ArgumentTypeError(
            MSG_BAD_IDEMPOTENCY_KEY.format(limit=MAX_IDEMPOTENCY_KEY, length=len(value))
        )
    return value


def queue_name(value: str) -> str:
    """A queue name argument: not blank.

    Raises:
        argparse.ArgumentTypeError: a blank name.
    """
    if not value.strip():
        raise argparse.ArgumentTypeError(MSG_BLANK_QUEUE)
    return value


def positive_int(value: str) -> int:
    """An integer argument of at least 1.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    return _at_least_one(value, MSG_NOT_POSITIVE_INT)


def _at_least_one(value: str, message: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(message.format(value=value))
    return number


def positive_float(value: str) -> float:
    """A finite number argument above 0.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(MSG_NOT_POSITIVE_NUMBER.format(value=value))
    return number


def priority(value: str) -> int:
    """A run priority argument: an integer within -1000..1000.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(MSG_BAD_PRIORITY.format(value=value)) from None
    problem = priority_problem(number)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return number


_RATE = re.compile(r"(\d+)/(\d*)([smh])")
_RATE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours"}


def rate_limit(value: str) -> RateLimit:
    """A rate limit argument: ``COUNT/PERIOD``, such as ``100/1m``, ``5/s`` or ``10/30s``.

    Raises:
        argparse.ArgumentTypeError: anything else, or a zero count or period.
    """
    match = _RATE.fullmatch(value.strip())
    if match is None:
        raise argparse.ArgumentTypeError(MSG_BAD_RATE.format(value=value))
    count, amount = int(match.group(1)), int(match.group(2) or 1)
    if count == 0 or amount == 0:
        raise argparse.ArgumentTypeError(MSG_BAD_RATE.format(value=value))
    try:
        return RateLimit(count, per=timedelta(**{_RATE_UNITS[match.group(3)]: amount}))
    except OverflowError:  # a period longer than a timedelta holds
        raise argparse.ArgumentTypeError(MSG_BAD_RATE.format(value=value)) from None


_DURATION = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def duration(value: str) -> timedelta:
    """A duration argument: a whole number and a unit, ``30d``, ``12h`` or ``90m``.

    Raises:
        argparse.ArgumentTypeError: anything else, or zero.
    """
    match = _DURATION.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(MSG_BAD_DURATION.format(value=value))
    try:
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise argparse.ArgumentTypeError(MSG_BAD_DURATION.format(value=value)) from None


def json_object(value: str) -> dict[str, Any]:
    """A JSON object argument: inline text, ``@path`` to read a file, or ``@-`` for stdin.

    Raises:
        argparse.ArgumentTypeError: unreadable, not JSON, ``NaN`` / ``Infinity``, or not an
            object.
    """
    text = value
    if value.startswith("@"):
        source = value[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise argparse.ArgumentTypeError(
                MSG_UNREADABLE.format(path=source, error=getattr(exc, "strerror", None) or exc)
            ) from None
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(MSG_BAD_JSON.format(error=exc)) from None
    if not isinstance(parsed, dict):
        kind = _JSON_KINDS.get(type(parsed), "null")
        raise argparse.ArgumentTypeError(MSG_NOT_AN_OBJECT.format(kind=kind))
    return parsed


_JSON_KINDS: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _reject_constant(value: str) -> Any:
    raise argparse.ArgumentTypeError(MSG_NOT_FINITE.format(value=value))
