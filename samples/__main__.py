"""Run a sample workflow end to end, or print its graph.

Usage::

    python -m samples [NAME]                 # run it: worker, run, progress, final history
    python -m samples NAME --graph [--json]  # print the compiled graph instead
    python -m samples --list

The run uses the embedded SQLite database ``.samples/squidmesh.db`` (``--database URL`` for
another, e.g. PostgreSQL) and the built-in database queue, with a worker in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samples import SAMPLES
from samples.demos import DEMOS, ledger_entries
from squidmesh_sdk import Client, DatabaseExecutor, Run, Worker, Workflow, compile
from squidmesh_sdk.store import jobs as job_store

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE = f"sqlite:///{ROOT / '.samples' / 'squidmesh.db'}"


def load(name: str) -> Workflow:
    module = importlib.import_module(f"samples.{name}")
    workflow = module.workflow
    assert isinstance(workflow, Workflow)
    return workflow


def print_graph(name: str, *, as_json: bool) -> None:
    definition = compile(load(name))
    if as_json:
        print(definition.to_json())
        return
    count = len(definition.steps)
    print(f"workflow {definition.name} ({definition.shape}), {count} step{'s' * (count != 1)}")
    print(f"triggers: {', '.join(definition.triggers)}; fingerprint {definition.fingerprint}")
    print()
    print(definition.to_mermaid(), end="")


def run_sample(
    name: str, *, database: str = DEFAULT_DATABASE, say: Callable[[str], None] = print
) -> Run:
    """Start a worker, run sample ``name`` to its end while reporting progress; return the run."""
    if database == DEFAULT_DATABASE:
        (ROOT / ".samples").mkdir(exist_ok=True)
    demo = DEMOS[name]
    workflows = [load(sample) for sample in SAMPLES]
    with Client(database, workflows, executor=DatabaseExecutor(), observers=[]) as client:
        client.migrate()
        setup = demo.setup(client) if demo.setup is not None else contextlib.nullcontext({})
        with setup as environment, Worker(client, concurrency=4, poll_interval=0.05) as worker:
            say(f"sample {name}: database {database}, worker {worker.name} (4 threads)")
            run = client.start_run(name, demo.payload(environment), trigger=demo.trigger)
            say(f"started run {run.id} through trigger {run.trigger!r}")
            say(f"payload {json.dumps(dict(run.payload), sort_keys=True)}")
            final = _follow(client, run.id, demo.on_progress, say)
        _report(client, final, say)
        return final


def _follow(
    client: Client,
    run_id: str,
    on_progress: Callable[[Client, Run, Callable[[str], None]], None] | None,
    say: Callable[[str], None],
) -> Run:
    seen: set[tuple[str, int, str]] = set()
    status = ""
    while True:
        run = client.inspect_run(run_id, include_history=True)
        for step_run in run.step_runs or ():
            for attempt in step_run.attempts or ():
                key = (step_run.step, attempt.number, attempt.status)
                if key not in seen:
                    seen.add(key)
                    error = f": {attempt.error['message']}" if attempt.error else ""
                    say(f"  {step_run.step:<28} attempt {attempt.number} {attempt.status}{error}")
        if run.status != status:
            status = run.status
            where = f" at {run.current_step}" if run.current_step else ""
            say(f"run is {status}{where}")
        if on_progress is not None:
            on_progress(client, run, say)
        if run.terminal and not _jobs_left(client, run_id):
            return client.inspect_run(run_id, include_history=True)
        time.sleep(0.05)


def _jobs_left(client: Client, run_id: str) -> bool:
    with client.database.read() as connection:
        return bool(job_store.list_jobs(connection, run_id=run_id))


def _report(client: Client, run: Run, say: Callable[[str], None]) -> None:
    say("")
    say(f"final state: {run.status}")
    if run.last_error:
        say(f"last error: {json.dumps(_brief(run.last_error), sort_keys=True)}")
    say(f"context: {json.dumps(dict(run.context), sort_keys=True)}")
    say("step history:")
    for step_run in run.step_runs or ():
        attempts = ", ".join(f"{a.number}:{a.status}" for a in step_run.attempts or ()) or "-"
        say(f"  {step_run.step:<28} {step_run.status:<10} attempts {attempts}")
        compensation = (step_run.recovery or {}).get("compensation")
        if isinstance(compensation, dict) and compensation.get("status") != "available":
            outcome = compensation.get("output") or compensation.get("error")
            say(f"  {'':<28} compensation {compensation.get('status')}: {outcome}")
    for event in run.events or ():
        actor = f" by {event.actor}" if event.actor else ""
        if event.type == "skipped":  # a branch not taken: the steps it left out
            say(f"audit: skipped {', '.join((event.metadata or {}).get('steps', []))}")
        else:
            say(f"audit: {event.type} at {event.step}{actor}")
    if run.workflow == "local_ledger_checkout":
        say(f"ledger rows written: {ledger_entries(client, run.id)}")


def _brief(error: Any) -> Any:
    if isinstance(error, dict):
        return {k: _brief(v) for k, v in error.items() if k != "traceback"}
    return error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samples", description=__doc__)
    parser.add_argument("name", nargs="?", default="saga_checkout", choices=SAMPLES)
    parser.add_argument("--graph", action="store_true", help="print the graph; do not run")
    parser.add_argument("--json", action="store_true", help="with --graph: the JSON graph")
    parser.add_argument("--list", action="store_true", help="list the samples")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="SQLAlchemy database URL")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SAMPLES))
        return 0
    if args.graph or args.json:
        print_graph(args.name, as_json=args.json)
        return 0
    run_sample(args.name, database=args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
