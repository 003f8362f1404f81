"""The Workflows pages: what the client holds, every version, its graph and its schedules.

A workflow's page shows one held version (the current one unless ``?version=`` names
another): its graph (SVG, and the Mermaid text), its steps and triggers as the definition's
JSON form has them (fields this page does not know are listed as they are), and for the
current version's cron triggers the last window a worker handled and the next firing times.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.responses import Response

from squidmesh_sdk.graph import TriggerNode, WorkflowDefinition
from squidmesh_sdk.runtime import schedules
from squidmesh_sdk.store import cron_schedules
from squidmesh_sdk.ui.context import Page
from squidmesh_sdk.ui.graph_svg import render_graph

__all__ = ["NEXT_FIRES", "workflow", "workflows"]

NEXT_FIRES = 5
_STEP_FIELDS = ("name", "kind", "description", "depends_on", "phase", "function", "inputs")


async def workflows(page: Page) -> Response:
    """``GET /workflows``: every workflow with its versions, triggers and next cron firing."""
    now = page.now()
    described = await page.call(_describe, page, sorted(page.client.workflows), now)
    return page.render("workflows.html", workflows=described)


async def workflow(page: Page) -> Response:
    """``GET /workflows/{name}``: one version of a workflow in full."""
    name = page.request.path_params["name"]
    if name not in page.client.workflows:
        return page.render(
            "not_found.html",
            status=404,
            message=f"This application registers no workflow named {name!r}.",
            back=page.url("/workflows"),
        )
    now = page.now()
    (described,) = await page.call(_describe, page, [name], now)
    held: dict[str, WorkflowDefinition] = described["held"]
    wanted = page.request.query_params.get("version") or described["current_version"]
    definition = held.get(wanted)
    if definition is None:
        return page.render(
            "not_found.html",
            status=404,
            message=f"Workflow {name!r} has no version {wanted!r} here.",
            back=page.url(f"/workflows/{name}"),
        )
    shape = definition.to_dict()
    return page.render(
        "workflow.html",
        workflow=described,
        definition=definition,
        shape=shape,
        steps=[_step(step) for step in shape["steps"]],
        graph=render_graph(shape, link_prefix=None),
        mermaid=definition.to_mermaid(),
    )


def _describe(page: Page, names: list[str], now: datetime) -> list[dict[str, Any]]:
    held_versions = page.client.runtime.versions
    described = []
    with page.client.database.read() as connection:
        for name in names:
            current = page.client.workflows[name]
            held = dict(held_versions.get(name) or {current.version: current})
            cron = [t for t in current.triggers.values() if t.kind == "cron"]
            described.append(
                {
                    "name": name,
                    "description": current.description,
                    "current_version": current.version,
                    "current": current,
                    "held": held,
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
    fires: list[datetime] = []
    moment = now
    for _ in range(NEXT_FIRES):
        moment = schedules.next_start(trigger, moment)
        fires.append(moment)
    return {
        "trigger": trigger.name,
        "expression": trigger.expression,
        "timezone": trigger.timezone or "UTC",
        "last_window_start": last,
        "next_fires": fires,
    }


def _step(step: dict[str, Any]) -> dict[str, Any]:
    """A step of the JSON form: the fields every step has, and the rest as they are."""
    return {
        "name": step.get("name"),
        "kind": step.get("kind"),
        "description": step.get("description"),
        "depends_on": step.get("depends_on") or [],
        "function": step.get("function"),
        "inputs": step.get("inputs") or [],
        "more": {k: v for k, v in step.items() if k not in _STEP_FIELDS},
    }
