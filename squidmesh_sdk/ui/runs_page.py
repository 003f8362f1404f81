"""The Runs page: runs newest first, filtered, paged by keyset, refreshed live.

Each page is one ``Client.list_runs`` call: an indexed range read whatever the table's size
(``after`` is the last run of the previous page, not an offset). The page asks for one run
more than it shows, to know whether an older page exists. The live refresh fetches the same
URL with ``X-Squidmesh-Fragment: rows`` and swaps the table body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from squidmesh_sdk import errors
from squidmesh_sdk.state_machine import STATES
from squidmesh_sdk.store.records import Run, parse_run_id
from squidmesh_sdk.ui.context import Page

__all__ = ["FRAGMENT_HEADER", "RunFilters", "runs"]

FRAGMENT_HEADER = "x-squidmesh-fragment"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFilters:
    """The filters of the Runs page, as given in its query string."""

    workflow: str = ""
    status: str = ""
    since: str = ""
    until: str = ""
    run_id: str = ""
    after: str = ""

    def query(self, **changes: str) -> dict[str, str]:
        """The query string of these filters (with ``changes``), for links."""
        values: dict[str, Any] = {
            "workflow": self.workflow,
            "status": self.status,
            "since": self.since,
            "until": self.until,
            "after": self.after,
        }
        values.update(changes)
        return values


async def runs(page: Page) -> Response:
    """``GET /runs``: the filter form, the table of runs and the paging links."""
    params = page.request.query_params
    filters = RunFilters(
        workflow=params.get("workflow", "").strip(),
        status=params.get("status", "").strip(),
        since=params.get("since", "").strip(),
        until=params.get("until", "").strip(),
        run_id=params.get("id", "").strip(),
        after=params.get("after", "").strip(),
    )
    problems: list[str] = []
    if filters.run_id:
        found = await _find_run(page, filters.run_id, problems)
        if found is not None:
            return page.redirect(f"/runs/{found.id}")
    arguments: dict[str, Any] = {"limit": page.settings.page_size + 1}
    if filters.workflow:
        arguments["workflow"] = filters.workflow
    if filters.status:
        if filters.status in STATES:
            arguments["status"] = filters.status
        else:
            problems.append(f"unknown status {filters.status!r}")
    for name in ("since", "until"):
        value = getattr(filters, name)
        if value:
            parsed = _parse_time(value)
            if parsed is None:
                problems.append(f"{name}: {value!r} is not a date and time (YYYY-MM-DD HH:MM)")
            else:
                arguments[name] = parsed
    if filters.after:
        arguments["after"] = filters.after
    found_runs: list[Run] = []
    if not problems:
        try:
            found_runs = await page.call(page.client.list_runs, **arguments)
        except (errors.InvalidRunId, errors.RunNotFound):
            problems.append("the page to continue from no longer exists; showing the newest")
            arguments.pop("after")
            found_runs = await page.call(page.client.list_runs, **arguments)
        except errors.InvalidArgument as exc:  # a filter the client refuses (a NUL in a name)
            problems.append(f"{exc.argument}: {exc.problem}")
    older = None
    if len(found_runs) > page.settings.page_size:
        found_runs = found_runs[: page.settings.page_size]
        older = found_runs[-1].id
    values: dict[str, Any] = {
        "runs": found_runs,
        "filters": filters,
        "older": older,
        "problems": problems,
        "statuses": STATES,
        "workflows": sorted(set(page.client.workflows) | ({filters.workflow} - {""})),
    }
    if page.request.headers.get(FRAGMENT_HEADER) == "rows":
        return page.render("runs_rows.html", **values)
    return page.render("runs.html", status=400 if problems else 200, **values)


async def _find_run(page: Page, run_id: str, problems: list[str]) -> Run | None:
    try:
        parse_run_id(run_id)
    except errors.InvalidRunId:
        problems.append(f"{run_id!r} is not a run id (a UUID)")
        return None
    try:
        run: Run = await page.call(page.client.inspect_run, run_id)
    except errors.RunNotFound:
        problems.append(f"no run has the id {run_id}")
        return None
    return run


def _parse_time(value: str) -> datetime | None:
    """An ISO date and time; without a zone it is UTC (the times the pages show)."""
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
