"""The one shape of every stored error: attempts, step runs, a run's ``last_error``, compensation.

```
{
  "kind": "step_error",          # what failed, one of KINDS
  "message": "card declined",    # one line for people
  "code": "card_declined",       # machine-readable (str) or null
  "type": "myapp.CardDeclined",  # the exception's qualified class name, or null
  "retryable": false,            # whether the retry policy could try it again
  "step": "charge",              # the step it belongs to, or null
  "details": {},                 # kind-specific JSON values (always an object)
  "cause": null                  # an error of this same shape, or null
}
```

Attempt errors also carry ``traceback`` (text, truncated from the top). Rows written by older
releases, whose errors had other shapes, are read through :func:`upgrade` into this one.
"""

from __future__ import annotations

import traceback as tb
from collections.abc import Mapping
from typing import Any, Final

from squidmesh_sdk import errors, strict_json

__all__ = ["KINDS", "error_record", "from_exception", "upgrade"]

KINDS: Final = (
    "step_error",  # the step body raised (including NonRetryableError and RetryAfter)
    "input_validation",  # the step's inputs were missing or invalid (StepInputError)
    "output_invalid",  # the step returned something that cannot be stored (StepOutputError)
    "timeout",  # an async step ran past its timeout (StepTimeout)
    "outcome_not_stored",  # the database refused to record the step's outcome
    "abandoned",  # its worker was lost (code worker_lost, stale_running_step) or superseded
    "dispatch_failed",  # the executor refused the next work; the run failed
    "compensation_failed",  # one or more compensation callbacks failed
    "cancelled",  # the run was cancelled while the step waited
    "definition_unavailable",  # reserved: no worker holds the run's workflow version
)
"""Every ``kind`` a stored error may have."""

_TRACEBACK_LIMIT = 4000
_CAUSE_DEPTH = 3


def error_record(
    kind: str,
    message: str,
    *,
    code: str | None = None,
    type: str | None = None,
    retryable: bool = False,
    step: str | None = None,
    details: Mapping[str, Any] | None = None,
    cause: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An error in the documented shape."""
    return {
        "kind": kind,
        "message": strict_json.safe_text(message),
        "code": code,
        "type": type,
        "retryable": retryable,
        "step": step,
        "details": _safe_details(details),
        "cause": dict(cause) if cause is not None else None,
    }


def from_exception(
    exc: BaseException, *, step: str | None = None, with_traceback: bool = True
) -> dict[str, Any]:
    """The stored form of ``exc`` (its ``__cause__`` chain as ``cause``, a few levels deep)."""
    return _describe(exc, step, with_traceback, _CAUSE_DEPTH)


def _describe(
    exc: BaseException, step: str | None, with_traceback: bool, depth: int
) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    extra = dict(details) if isinstance(details, Mapping) else {}
    if isinstance(exc, errors.RetryAfter):
        extra["retry_after"] = exc.delay
    chained = exc.__cause__
    if chained is None and not exc.__suppress_context__:
        chained = exc.__context__
    record = error_record(
        _kind(exc),
        str(exc) or type(exc).__name__,
        code=code if isinstance(code, str) else None,
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        retryable=not isinstance(exc, errors.NonRetryableError),
        step=step,
        details=extra,
        cause=_describe(chained, None, False, depth - 1) if chained and depth > 0 else None,
    )
    if with_traceback and exc.__traceback__ is not None:
        text = "".join(tb.format_exception(exc))
        record["traceback"] = strict_json.safe_text(text[-_TRACEBACK_LIMIT:])
    return record


def _kind(exc: BaseException) -> str:
    if isinstance(exc, errors.StepInputError):
        return "input_validation"
    if isinstance(exc, errors.StepOutputError):
        return "output_invalid"
    if isinstance(exc, errors.OutcomeNotStored):
        return "outcome_not_stored"
    if isinstance(exc, errors.StepTimeout):
        return "timeout"
    return "step_error"


def _safe_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``details`` when they are strict JSON; otherwise their text, so the error still stores."""
    if not details:
        return {}
    value = dict(details)
    if strict_json.find_problem(value) is None:
        try:
            plain: dict[str, Any] = _plain(value)
        except TypeError:
            pass
        else:
            return plain
    return {"unstorable": strict_json.safe_text(repr(value))[:1000]}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(type(value).__name__)


# --- rows written before errors had one shape -------------------------------------------------

_EXCEPTION_KINDS = {
    "StepInputError": "input_validation",
    "StepOutputError": "output_invalid",
    "StepTimeout": "timeout",
}
_OLD_KEYS = ("message", "type", "retryable", "step", "cause", "traceback", "reason")


def upgrade(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``stored`` in the documented shape; errors written by older releases are converted."""
    if stored is None:
        return None
    if "kind" in stored:
        return dict(stored)
    old = dict(stored)
    message = str(old.get("message") or "error")
    details = {k: v for k, v in old.items() if k not in _OLD_KEYS}
    cause = old.get("cause")
    if not isinstance(cause, Mapping):
        if cause is not None:
            details["reason"] = cause
        cause = None
    reason = old.get("reason")
    if reason in ("worker_lost", "stale_running_step"):
        kind, code, retryable = "abandoned", reason, True
    elif reason == "cancelled":
        kind, code, retryable = "cancelled", "cancelled", False
    elif "compensation_failures" in old:
        kind, code, retryable = "compensation_failed", None, False
    elif "dispatch_reason" in old or message == "failed to dispatch workflow step":
        kind, code, retryable = "dispatch_failed", None, False
    else:
        name = str(old.get("type") or "").rsplit(".", 1)[-1]
        kind, code = _EXCEPTION_KINDS.get(name, "step_error"), None
        retryable = bool(old.get("retryable", False))
    record = error_record(
        kind,
        message,
        code=code,
        type=str(old["type"]) if old.get("type") else None,
        retryable=retryable,
        step=str(old["step"]) if old.get("step") else None,
        details=details,
        cause=upgrade(cause),
    )
    if isinstance(old.get("traceback"), str):
        record["traceback"] = old["traceback"]
    return record
