"""The Run page, its live status, and the actions taken from it.

The page is built from ``Client.inspect_run(..., include_history=True)``,
``Client.explain_run`` and the definition the run is pinned to (its ``to_dict()`` for the
graph, ``to_mermaid()`` beside it). Actions POST to ``/runs/{id}/actions/{name}`` and, once
done, redirect (303) to the run's page, or to the new run for a replay; a refused action
shows the page again with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from squidmesh_sdk import errors
from squidmesh_sdk.graph import WorkflowDefinition
from squidmesh_sdk.runtime.explanation import RunExplanation
from squidmesh_sdk.store.records import Run, parse_run_id
from squidmesh_sdk.ui import present
from squidmesh_sdk.ui.context import Page
from squidmesh_sdk.ui.graph_svg import render_graph
from squidmesh_sdk.ui.run_actions import RUN_ACTIONS
from squidmesh_sdk.ui.run_view import (
    attempt_rows,
    compensations,
    grouped,
    node_states,
    taken_edges,
)
from squidmesh_sdk.ui.timeline import MAX_ROWS, render_timeline

__all__ = ["run", "run_action", "run_status"]

logger = logging.getLogger(__name__)

_STATUS = {
    errors.InvalidRunId: 404,
    errors.RunNotFound: 404,
    errors.InvalidResume: 400,
}


async def run(page: Page) -> Response:
    """``GET /runs/{run_id}``: everything about one run."""
    run_id = page.request.path_params["run_id"]
    done = page.request.query_params.get("done", "")
    notice = None
    if done in {action.name for action in RUN_ACTIONS.values()}:
        notice = f"{RUN_ACTIONS[done].done.capitalize()}."
    return await render_run(page, run_id, notice=notice)


async def run_status(page: Page) -> Response:
    """``GET /runs/{run_id}/status``: the run's status as JSON, for the live refresh."""
    run_id = page.request.path_params["run_id"]
    try:
        found: Run = await page.call(page.client.inspect_run, run_id)
    except (errors.InvalidRunId, errors.RunNotFound):
        return JSONResponse({"error": "no such run"}, status_code=404)
    return JSONResponse(
        {
            "id": found.id,
            "status": found.status,
            "current_step": found.current_step,
            "updated_at": found.updated_at.isoformat(),
        }
    )


async def run_action(page: Page) -> Response:
    """``POST /runs/{run_id}/actions/{name}``: one of :data:`RUN_ACTIONS`."""
    run_id = page.request.path_params["run_id"]
    name = page.request.path_params["name"]
    action = RUN_ACTIONS.get(name)
    if action is None:
        return await render_run(page, run_id, error=f"Unknown action {name!r}.", status=404)
    assert page.actor is not None  # noqa: S101 - actions need an authenticated actor
    try:
        parse_run_id(run_id)
        result: Run = await page.call(action.perform, page.client, run_id, page.actor, page.form)
    except errors.SquidmeshError as exc:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 409)
        return await render_run(page, run_id, error=present.one_line(str(exc)), status=status)
    logger.info(
        "inspector action",
        extra={
            "action": name,
            "run_id": run_id,
            "result_run_id": result.id,
            "actor": present.actor_text(page.actor),
        },
    )
    return page.redirect(f"/runs/{result.id}", done=name)


async def render_run(
    page: Page,
    run_id: str,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The Run page (with a notice or an error above it)."""
    try:
        found, explanation = await page.call(_load, page, run_id)
    except (errors.InvalidRunId, errors.RunNotFound) as exc:
        return page.render(
            "not_found.html",
            status=404,
            message=present.one_line(str(exc)),
            back=page.url("/runs"),
        )
    definition = _definition(page, found)
    graph = graph_text = None
    states = node_states(found, list(definition.steps) if definition else [])
    if definition is not None:
        shape = definition.to_dict()
        graph = render_graph(shape, states, taken=taken_edges(found, shape))
        graph_text = definition.to_mermaid()
    now = page.now()
    rows = attempt_rows(found, now)
    end = now if not found.terminal else max([found.updated_at, *(r.ended or now for r in rows)])
    offered, hints = _actions(explanation)
    waiting = explanation.details.get("waiting_steps")
    # The steps that wait for a decision: the explanation's step is another one when an
    # approval waits beside a running branch (it is the running step then).
    targets = (
        [str(step) for step in waiting]
        if isinstance(waiting, list) and waiting
        else [explanation.step]
    )
    return page.render(
        "run.html",
        status=status,
        run=found,
        explanation=explanation,
        definition=definition,
        graph=graph,
        graph_text=graph_text,
        states=states,
        groups=grouped(found.step_runs or ()),
        rows=rows,
        timeline=render_timeline(rows, found.inserted_at, end) if rows else None,
        rows_cut=len(rows) > MAX_ROWS,
        compensations=compensations(found),
        offered=offered,
        targets=targets,
        hints=hints,
        trace=_trace(page, found),
        links=_links(found),
        notice=notice,
        error=error,
    )


def _load(page: Page, run_id: str) -> tuple[Run, RunExplanation]:
    found = page.client.inspect_run(run_id, include_history=True)
    return found, page.client.explain_run(run_id)


def _definition(page: Page, found: Run) -> WorkflowDefinition | None:
    try:
        return page.client.runtime.definition_of(found)
    except (errors.InvalidWorkflow, errors.DefinitionUnavailable):
        return None


def _actions(explanation: RunExplanation) -> tuple[list[Any], list[str]]:
    """The next actions with a form here, and the others (shown as hints)."""
    offered = [RUN_ACTIONS[name] for name in explanation.next_actions if name in RUN_ACTIONS]
    hints = [name for name in explanation.next_actions if name not in RUN_ACTIONS]
    replay = explanation.details.get("replay")
    # A replay blocked by irreversible steps is still possible, with the override.
    if (
        isinstance(replay, Mapping)
        and replay.get("allowed") is False
        and RUN_ACTIONS["replay_run"] not in offered
    ):
        offered.append(RUN_ACTIONS["replay_run"])
    return offered, hints


def _trace(page: Page, found: Run) -> dict[str, str] | None:
    trace_id = present.trace_id(found.trace_context)
    if trace_id is None:
        return None
    template = page.settings.trace_url
    link = template.replace("{trace_id}", trace_id) if template else None
    return {"id": trace_id, "url": link or ""}


def _links(found: Run) -> list[tuple[str, str]]:
    """Runs this one names (``*_run_id``: replayed from, parent...), then its children."""
    links = []
    for field in dataclasses.fields(found):
        name = field.name
        if name.endswith("run_id"):
            value = getattr(found, name)
            if isinstance(value, str) and value:
                links.append((present.humanize(name.removesuffix("_id")), value))
    links.extend(
        (f"child run ({child.workflow}, {child.status})", child.child_run_id)
        for child in found.children or ()
    )
    return links
