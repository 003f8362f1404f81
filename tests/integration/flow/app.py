"""Workflows of the flow-control tests, shared with their worker processes.

Steps append one JSON line when they start and one when they end to the file named by the
payload's ``log`` (``O_APPEND`` writes of one short line do not interleave). A step's end is
written before it returns, so before its job is settled, so before any claim can take the
next job of its key: intervals of one key that overlap did run at the same time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    Client,
    ConcurrencyLimit,
    DatabaseExecutor,
    StepContext,
    Workflow,
    manual,
)


class FlowPayload(BaseModel):
    customer: str
    log: str = ""
    sleep: float = 0.0


class AccountPayload(BaseModel):
    account: str | None = None


def record(log: str, event: str, ctx: StepContext, customer: str) -> None:
    if not log:
        return
    line = json.dumps(
        {
            "event": event,
            "key": customer,
            "run": ctx.run_id,
            "step": ctx.step,
            "attempt": ctx.attempt,
            "t": time.time_ns(),
        }
    )
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _body(name: str) -> Any:
    def body(customer: str, log: str, sleep: float, ctx: StepContext) -> dict[str, Any]:
        record(log, "start", ctx, customer)
        time.sleep(sleep)
        record(log, "end", ctx, customer)
        return {name: True}

    body.__name__ = body.__qualname__ = name
    return body


def keyed_workflow(limit: int = 2) -> Workflow:
    """Three steps; at most ``limit`` steps of one customer run at once."""
    workflow = Workflow(
        "keyed",
        triggers=[manual("go", payload=FlowPayload)],
        concurrency=ConcurrencyLimit("payload.customer", limit=limit),
    )
    steps = [workflow.step(_body(f"keyed_{index}")) for index in range(1, 4)]
    workflow.chain(*steps, COMPLETE)
    return workflow


def plain_workflow() -> Workflow:
    """One step, no key."""
    workflow = Workflow("plain", triggers=[manual("go", payload=FlowPayload)])
    workflow.chain(workflow.step(_body("plain_1")), COMPLETE)
    return workflow


def by_account_workflow() -> Workflow:
    """The second step is limited per ``context.account``, which the first may not set."""
    workflow = Workflow("by_account", triggers=[manual("go", payload=AccountPayload)])

    @workflow.step
    def look_up(account: str | None = None) -> dict[str, Any]:
        return {"account": account} if account else {}

    @workflow.step(concurrency=ConcurrencyLimit("context.account", limit=1))
    def charge() -> dict[str, Any]:
        return {"charged": True}

    workflow.chain(look_up, charge, COMPLETE)
    return workflow


def make_client(url: str) -> Client:
    return Client(
        url,
        [keyed_workflow(), plain_workflow(), by_account_workflow()],
        executor=DatabaseExecutor(),
    )


def read_log(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def ended_at(events: list[dict[str, Any]], moment: int) -> list[dict[str, Any]]:
    """``events``, with an end at ``moment`` for each attempt that started and never ended
    (its worker was killed then)."""
    ends = {(e["run"], e["step"], e["attempt"]) for e in events if e["event"] == "end"}
    unfinished = [
        {**e, "event": "end", "t": moment}
        for e in events
        if e["event"] == "start" and (e["run"], e["step"], e["attempt"]) not in ends
    ]
    return events + unfinished


def max_overlap(events: list[dict[str, Any]]) -> dict[str, int]:
    """The most steps of each key that were running at the same moment."""
    # At one instant an end comes before a start: the next job of a key is claimed only after
    # the previous one's end was written.
    ordered = sorted(events, key=lambda e: (e["t"], 0 if e["event"] == "end" else 1))
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    for event in ordered:
        key = event["key"]
        running[key] = running.get(key, 0) + (1 if event["event"] == "start" else -1)
        peak[key] = max(peak.get(key, 0), running[key])
    return peak
