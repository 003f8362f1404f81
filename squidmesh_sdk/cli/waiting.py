"""Waiting on a run from the command line: ``runs start --wait`` and ``runs show --follow``.

Both end when the run finishes, and exit with its outcome: 0 completed, 3 failed, 4 cancelled;
5 when ``--timeout`` runs out first (the run goes on), 130 on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime

from squidmesh_sdk.cli import render
from squidmesh_sdk.cli.errors import (
    EXIT_OK,
    EXIT_RUN_CANCELLED,
    EXIT_RUN_FAILED,
    WaitTimedOut,
)
from squidmesh_sdk.client import Client
from squidmesh_sdk.errors import RunWaitTimeout
from squidmesh_sdk.store.records import Run

__all__ = [
    "FOLLOW_INTERVAL",
    "MSG_TIMED_OUT",
    "MSG_WAITING",
    "finished_line",
    "follow",
    "outcome",
    "wait",
]

FOLLOW_INTERVAL = 0.5
"""Seconds between looks at a followed run's steps (it ending is noticed at once)."""

MSG_WAITING = "waiting for run {run_id} to finish; Ctrl-C stops waiting, the run goes on"
MSG_TIMED_OUT = "run {run_id} is still {status} after {timeout:g}s; it goes on"


def outcome(run: Run) -> int:
    """The exit code of a finished run: 0 completed, 3 failed, 4 cancelled."""
    if run.status == "failed":
        return EXIT_RUN_FAILED
    if run.status == "cancelled":
        return EXIT_RUN_CANCELLED
    return EXIT_OK


def finished_line(run: Run) -> str:
    """``run ID completed``; a failed run adds its step and error."""
    line = f"run {run.id} {run.status}"
    if run.status == "failed":
        if run.current_step:
            line += f" at step {run.current_step}"
        error = render.error_text(run.last_error)
        if error:
            line += f": {error}"
    return line


def wait(client: Client, run: Run, timeout: float | None, *, note: Callable[[str], None]) -> Run:
    """Block until ``run`` finishes; ``note`` that it waits, unless it is finished.

    Raises:
        WaitTimedOut: ``timeout`` seconds passed first.
    """
    if run.terminal:
        return run
    note(MSG_WAITING.format(run_id=run.id))
    try:
        return client.wait_for_run(run.id, timeout=timeout)
    except RunWaitTimeout as exc:
        raise WaitTimedOut(
            MSG_TIMED_OUT.format(run_id=exc.run_id, status=exc.status, timeout=exc.timeout)
        ) from exc


def follow(
    client: Client,
    run_id: str,
    *,
    timeout: float | None,
    as_json: bool,
    write: Callable[[str], None],
    note: Callable[[str], None],
) -> int:
    """Print the run's progress as it happens, then the run (as ``runs show``); its outcome.

    Progress lines go to ``write`` (to ``note`` with ``as_json``: the output is then the
    final run's JSON); they name each run status and each attempt as it starts and ends.

    Raises:
        WaitTimedOut: ``timeout`` seconds passed first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: dict[tuple[str, ...], str] = {}
    while True:
        run = client.inspect_run(run_id, include_history=True)
        for line in _progress(run, seen):
            (note if as_json else write)(line)
        if run.terminal:
            break
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            assert timeout is not None  # noqa: S101 - a deadline comes from a timeout
            raise WaitTimedOut(
                MSG_TIMED_OUT.format(run_id=run.id, status=run.status, timeout=timeout)
            )
        pause = FOLLOW_INTERVAL if remaining is None else min(FOLLOW_INTERVAL, remaining)
        with contextlib.suppress(RunWaitTimeout):
            client.wait_for_run(run_id, timeout=pause)  # returns at once when the run ends
    write(render.to_json(render.run_dict(run, history=True)) if as_json else render.run_text(run))
    return outcome(run)


def _progress(run: Run, seen: dict[tuple[str, ...], str]) -> list[str]:
    """Lines for what changed since the last look (``seen`` is updated), oldest first.

    Attempts as they start and end, audit events (pauses, decisions, cancellations) and the
    run's status.
    """
    changes: list[tuple[datetime, int, str]] = []
    for step_run in run.step_runs or ():
        for attempt in step_run.attempts or ():
            key = (step_run.step, str(attempt.number))
            if seen.get(key) == attempt.status:
                continue
            seen[key] = attempt.status
            line = f"step {step_run.step} attempt {attempt.number} {attempt.status}"
            error = render.error_text(attempt.error) if attempt.status == "failed" else None
            if error:
                line += f": {error}"
            changes.append((attempt.updated_at, 0, line))
    events = run.events or ()
    for index, event in enumerate(events[int(seen.get(("events",), "0")) :]):
        if event.type == "paused":
            continue  # the run's status line says it
        line = f"{event.type}"
        if event.step:
            line += f" at step {event.step}"
        if event.actor is not None:
            actor = event.actor if isinstance(event.actor, str) else render.compact(event.actor)
            line += f" by {actor}"
        if event.comment:
            line += f": {event.comment}"
        changes.append((event.at, 2 + index, line))
    seen[("events",)] = str(len(events))
    if seen.get(("run",)) != run.status:
        seen[("run",)] = run.status
        line = f"run {run.status}"
        if run.status in ("paused", "retrying") and run.current_step:
            line += f" at step {run.current_step}"
        changes.append((run.updated_at, 1, line))
    changes.sort(key=lambda change: (change[0], change[1]))
    return [f"{render.human_time(at)}  {line}" for at, _, line in changes]
