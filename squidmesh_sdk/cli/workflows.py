"""``squidmesh workflows list | show``: what the app's client holds, and when cron fires next.

For each workflow: every version the client holds (new runs start on the current one, the
last listed; runs keep theirs), its triggers, and for cron triggers the last window a worker
handled (``squidmesh_cron_schedules``) and the next firing time. Cron triggers of the current
version are the ones workers schedule.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from squidmesh_sdk.cli import render
from squidmesh_sdk.cli.commands import Context, unknown_workflow
from squidmesh_sdk.cli.errors import EXIT_OK, UsageError
from squidmesh_sdk.client import Client
from squidmesh_sdk.graph import TriggerNode, WorkflowDefinition
from squidmesh_sdk.runtime import schedules
from squidmesh_sdk.store import cron_schedules

__all__ = ["workflow_dict", "workflows_list", "workflows_show"]


def workflows_list(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh workflows list``: workflows with versions, triggers and cron schedules."""
    client = ctx.client()
    now = client.clock.now()
    names = sorted(client.workflows)
    data = _describe(client, names, now)
    if args.json:
        ctx.write(render.to_json({"at": now, "workflows": data}))
        return EXIT_OK
    if not data:
        ctx.write("the app registers no workflows")
        return EXIT_OK
    rows = [
        (
            workflow["name"],
            version["version"],
            "yes" if version["current"] else "no",
            len(version["steps"]),
            ", ".join(_trigger_label(trigger) for trigger in version["triggers"]),
        )
        for workflow in data
        for version in workflow["versions"]
    ]
    sections = [render.table(("WORKFLOW", "VERSION", "CURRENT", "STEPS", "TRIGGERS"), rows)]
    schedule_rows = [
        (workflow["name"], *_schedule_row(schedule))
        for workflow in data
        for schedule in workflow["schedules"]
    ]
    if schedule_rows:
        sections.append(render.table(("WORKFLOW", *_SCHEDULE_HEADERS), schedule_rows))
    ctx.write("\n".join(sections))
    return EXIT_OK


def workflows_show(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh workflows show NAME``: one workflow's versions, steps, triggers, schedules."""
    client = ctx.client()
    if args.workflow not in client.workflows:
        raise UsageError(unknown_workflow(client, args.workflow))
    now = client.clock.now()
    (data,) = _describe(client, [args.workflow], now)
    if args.json:
        ctx.write(render.to_json({"at": now, **data}))
        return EXIT_OK
    current = client.workflows[args.workflow]
    versions = [version["version"] for version in data["versions"]]
    sections = [
        render.fields_text(
            [
                ("workflow", current.name),
                ("description", current.description or "-"),
                ("current version", current.version),
                ("versions held", ", ".join(versions)),
                ("shape", current.shape),
            ]
        )
    ]
    sections.append(
        render.table(
            ("STEP", "KIND", "RETRY", "COMPENSATION"),
            (
                (
                    node.name,
                    node.kind,
                    node.retry.max_attempts if node.retry is not None else 1,
                    node.compensation.qualname.rsplit(".", 1)[-1] if node.compensation else None,
                )
                for node in current.steps.values()
            ),
        )
    )
    sections.append(
        render.table(
            ("TRIGGER", "KIND", "CRON", "TIMEZONE"),
            (
                (trigger.name, trigger.kind, trigger.expression, trigger.timezone)
                for trigger in current.triggers.values()
            ),
        )
    )
    if data["schedules"]:
        sections.append(
            render.table(_SCHEDULE_HEADERS, (_schedule_row(s) for s in data["schedules"]))
        )
    ctx.write("\n".join(sections))
    return EXIT_OK


def workflow_dict(definition: WorkflowDefinition, *, current: bool) -> dict[str, Any]:
    """One held version as JSON.

    Keys: version, fingerprint, ``current`` (whether new runs start on it), its step names and
    its triggers (``TriggerNode.to_dict()``).
    """
    return {
        "version": definition.version,
        "fingerprint": definition.fingerprint,
        "current": current,
        "steps": list(definition.steps),
        "triggers": [trigger.to_dict() for trigger in definition.triggers.values()],
    }


_SCHEDULE_HEADERS = ("TRIGGER", "CRON", "TIMEZONE", "LAST_WINDOW", "NEXT_FIRE")


def _describe(client: Client, names: list[str], now: datetime) -> list[dict[str, Any]]:
    held = client.runtime.versions
    described = []
    with client.database.read() as connection:
        for name in names:
            current = client.workflows[name]
            versions = list((held.get(name) or {current.version: current}).values())
            cron = [t for t in current.triggers.values() if t.kind == "cron"]
            described.append(
                {
                    "name": name,
                    "description": current.description,
                    "current_version": current.version,
                    "versions": [
                        workflow_dict(definition, current=definition is current)
                        for definition in versions
                    ],
                    "schedules": [
                        _schedule(
                            trigger, cron_schedules.last_start(connection, name, trigger.name), now
                        )
                        for trigger in cron
                    ],
                }
            )
    return described


def _schedule(trigger: TriggerNode, last: datetime | None, now: datetime) -> dict[str, Any]:
    """A cron trigger's schedule: the last window a worker handled and the next firing time.

    ``last_window_start`` is ``None`` until a worker has seen the trigger. A worker that starts
    after missed windows first handles them by its ``cron_catch_up``; ``next_fire_at`` is the
    next firing time after now.
    """
    return {
        "trigger": trigger.name,
        "expression": trigger.expression,
        "timezone": trigger.timezone or "UTC",
        "last_window_start": last,
        "next_fire_at": schedules.next_start(trigger, now),
    }


def _schedule_row(schedule: dict[str, Any]) -> tuple[object, ...]:
    return (
        schedule["trigger"],
        schedule["expression"],
        schedule["timezone"],
        schedule["last_window_start"],
        schedule["next_fire_at"],
    )


def _trigger_label(trigger: dict[str, Any]) -> str:
    if trigger["kind"] == "cron":
        return f"{trigger['name']} (cron {trigger['expression']})"
    return f"{trigger['name']} ({trigger['kind']})"
