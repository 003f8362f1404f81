"""The ``squidmesh`` command line: its argparse parsers, one function per command group.

The argument types they use are in :mod:`squidmesh_sdk.cli.argument_types`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from squidmesh_sdk import __version__
from squidmesh_sdk.cli import commands, inspector
from squidmesh_sdk.cli import jobs as jobs_commands
from squidmesh_sdk.cli import queues as queues_commands
from squidmesh_sdk.cli import workflows as workflows_commands
from squidmesh_sdk.cli.argument_types import (
    duration,
    idempotency_key,
    job_id,
    json_object,
    port,
    positive_float,
    positive_int,
    priority,
    queue_name,
    rate_limit,
    run_id,
)
from squidmesh_sdk.cli.errors import UsageError
from squidmesh_sdk.runtime.retention import DEFAULT_BATCH_SIZE, FINISHED
from squidmesh_sdk.state_machine import STATES
from squidmesh_sdk.store.job_admin import JOB_STATES

__all__ = ["build_parser"]

PROG = "squidmesh"

DESCRIPTION = """\
Operate squidmesh workflows: migrate the schema, run workers, inspect and act on runs,
look at the workflows the app holds and at the database queue's jobs.

Finding the app: every command except 'migrate --print-sql --dialect D' needs the
application's squidmesh_sdk.Client. Name it with --app module.path:attribute (or the
SQUIDMESH_APP environment variable); the attribute is a Client instance or a zero-argument
callable returning one, and defaults to 'client' when left out. The current directory is
put on sys.path, so 'myapp.workflows:client' works from the project's root.
"""

EPILOG = """\
exit codes:
  0    success
  1    the operation failed or was refused (unknown run or job, invalid transition, invalid
       payload, database error, schema not current for 'migrate --check')
  2    usage error: bad arguments, malformed JSON, unknown workflow or trigger, no app
  3    'runs start --wait' / 'runs show --follow': the run failed
  4    'runs start --wait' / 'runs show --follow': the run was cancelled
  5    'runs start --wait' / 'runs show --follow': --timeout ran out first (the run goes on)
  130  interrupted

Errors are one line on stderr, starting 'squidmesh: error:'. Read commands take --json
(sorted keys, ISO-8601 times). See docs/cli.md for every command and JSON shape.
"""

RUN_ID_HELP = "the run's id (a UUID, as 'runs list' prints it)"
JOB_ID_HELP = "the job's id (a number, as 'jobs list' prints it)"


class _Parser(argparse.ArgumentParser):
    """Reports usage errors as a :class:`UsageError` (one line) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        where = f"{command}: " if command else ""
        raise UsageError(f"{where}{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The ``squidmesh`` parser; each command sets ``handler`` (a :mod:`.commands` function)."""
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        default=None,
        help="the app's Client (or a factory returning one); default: $SQUIDMESH_APP",
    )
    # Also accepted after the command: 'squidmesh runs list --app myapp:client'.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        default=argparse.SUPPRESS,
        help="the app's Client (or a factory returning one); default: $SQUIDMESH_APP",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _migrate(sub, common)
    _worker(sub, common)
    _runs(sub, common)
    _jobs(sub, common)
    _queues(sub, common)
    _workflows(sub, common)
    _ui(sub, common)
    graph = _command(sub, common, "graph", commands.graph, "print a workflow's graph")
    graph.add_argument("workflow", metavar="WORKFLOW", help="a workflow registered with the app")
    graph.add_argument(
        "--format", choices=("mermaid", "json"), default="mermaid", help="default: mermaid"
    )
    return parser


def _command(
    sub: Any,
    common: argparse.ArgumentParser,
    name: str,
    handler: Callable[..., int],
    summary: str,
    *,
    json_flag: bool = False,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common], help=summary, description=summary[0].upper() + summary[1:] + "."
    )
    parser.set_defaults(handler=handler)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON (see docs/cli.md)")
    return parser


def _migrate(sub: Any, common: argparse.ArgumentParser) -> None:
    migrate = _command(
        sub, common, "migrate", commands.migrate, "create or upgrade squidmesh's tables"
    )
    mode = migrate.add_mutually_exclusive_group()
    mode.add_argument(
        "--print-sql",
        action="store_true",
        help="print the SQL instead of applying it (for hosts with their own migration tool)",
    )
    mode.add_argument(
        "--check", action="store_true", help="exit 0 if the schema is current, else 1"
    )
    migrate.add_argument(
        "--dialect",
        choices=("sqlite", "postgresql"),
        help="with --print-sql: the SQL dialect (default: the app database's)",
    )
    migrate.add_argument("--json", action="store_true", help="print JSON (not with --print-sql)")


def _worker(sub: Any, common: argparse.ArgumentParser) -> None:
    worker = _command(
        sub,
        common,
        "worker",
        commands.worker,
        "deliver jobs of the database queue until SIGTERM or SIGINT",
    )
    worker.add_argument(
        "--queue",
        dest="queues",
        action="append",
        type=queue_name,
        metavar="NAME",
        help="a queue to take jobs from; repeat for several (default: the executor's queue)",
    )
    worker.add_argument(
        "--concurrency", type=positive_int, default=4, help="jobs at once (default: 4)"
    )
    worker.add_argument(
        "--lease", type=positive_float, default=30.0, help="job lease in seconds (default: 30)"
    )
    worker.add_argument(
        "--poll-interval",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds between looks at an idle queue (default: 1)",
    )
    worker.add_argument(
        "--purge-after",
        type=duration,
        metavar="DURATION",
        help="also purge finished runs older than this (30d, 12h, 90m), one worker at a time, "
        "every 5 minutes at most (default: never)",
    )
    worker.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="level of squidmesh's log lines on stderr (default: INFO)",
    )
    worker.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="log lines for people (console: one line per step, run and failure) or one JSON "
        "object per line for machines (default: console)",
    )


def _runs(sub: Any, common: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="list, inspect and act on runs", description="Runs.")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    listing = _command(
        runs_sub, common, "list", commands.runs_list, "list runs, newest first", json_flag=True
    )
    listing.add_argument("--workflow", help="only runs of this workflow")
    listing.add_argument("--status", choices=STATES, help="only runs in this status")
    listing.add_argument(
        "--limit", type=positive_int, default=50, help="at most this many (default: 50)"
    )
    listing.add_argument(
        "--after",
        type=run_id,
        metavar="RUN_ID",
        help="the page after this run: pass the last id of the previous page",
    )

    show = _command(
        runs_sub,
        common,
        "show",
        commands.runs_show,
        "show a run with its steps, attempts and audit events",
        json_flag=True,
    )
    show.add_argument("run_id", type=run_id, metavar="RUN_ID", help=RUN_ID_HELP)
    show.add_argument(
        "--follow",
        action="store_true",
        help="print progress as steps finish until the run finishes; exit 0 completed, "
        "3 failed, 4 cancelled",
    )
    show.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="with --follow: stop following after this long (exit 5; the run goes on)",
    )

    explain = _command(
        runs_sub,
        common,
        "explain",
        commands.runs_explain,
        "explain why a run is where it is and what can be done",
        json_flag=True,
    )
    explain.add_argument("run_id", type=run_id, metavar="RUN_ID", help=RUN_ID_HELP)

    for name, handler, summary, actor_required in (
        ("approve", commands.runs_approve, "approve a run's waiting approval step", True),
        ("reject", commands.runs_reject, "reject a run's waiting approval step", True),
        ("unblock", commands.runs_unblock, "resume a run's waiting pause step", False),
    ):
        action = _command(runs_sub, common, name, handler, summary, json_flag=True)
        action.add_argument("run_id", type=run_id, metavar="RUN_ID", help=RUN_ID_HELP)
        action.add_argument(
            "--actor", required=actor_required, help="who decides (recorded in the audit trail)"
        )
        action.add_argument("--comment", help="why (recorded in the audit trail)")
        action.add_argument(
            "--metadata",
            type=json_object,
            metavar="JSON",
            help="a JSON object recorded with the decision (or @FILE, @- for stdin)",
        )
        action.add_argument(
            "--step",
            metavar="STEP",
            help="the waiting step, when several wait at once (a name, or a key like review@2)",
        )

    signal = _command(
        runs_sub,
        common,
        "signal",
        commands.runs_signal,
        "send a signal to a run, for its signal step waiting for that name",
        json_flag=True,
    )
    signal.add_argument("run_id", type=run_id, metavar="RUN_ID", help=RUN_ID_HELP)
    signal.add_argument("name", metavar="NAME", help="the signal's name")
    signal.add_argument(
        "--json-payload",
        type=json_object,
        metavar="JSON",
        help="the signal's payload, a JSON object (or @FILE, @- for stdin); default: none",
    )
    signal.add_argument(
        "--idempotency-key",
        type=idempotency_key,
        metavar="KEY",
        help="deliver at most one signal with this key to the run: again, it prints the "
        "signal the key delivered",
    )

    cancel = _command(
        runs_sub, common, "cancel", commands.runs_cancel, "cancel a run", json_flag=True
    )
    cancel.add_argument("run_id", type=run_id, metavar="RUN_ID", help=RUN_ID_HELP)
    cancel.add_argument("--actor", help="who cancels (recorded in the audit trail)")
    cancel.add_argument("--reason", help="why (recorded in the audit trail)")

    replay = _command(
        runs_sub,
        common,
        "replay",
        commands.runs_replay,
        "start a new run with the same workflow, trigger and payload",
        json_flag=True,
    )
    replay.add_argument("run_id", type=run_id, metavar="RUN_ID", help=RUN_ID_HELP)
    replay.add_argument(
        "--allow-irreversible",
        action="store_true",
        help="replay even after irreversible or non-compensatable steps completed",
    )
    replay.add_argument("--actor", help="who replays (recorded in the audit trail)")
    replay.add_argument("--reason", help="why (recorded in the audit trail)")

    retry = _command(
        runs_sub,
        common,
        "retry",
        commands.runs_retry,
        "resume a failed run from its failed step, keeping what completed",
        json_flag=True,
    )
    retry.add_argument("run_id", type=run_id, metavar="RUN_ID", help=RUN_ID_HELP)
    retry.add_argument(
        "--from-step",
        metavar="STEP",
        help="resume from this step the run reached instead (the steps after it run again)",
    )
    retry.add_argument(
        "--allow-irreversible",
        action="store_true",
        help="retry even if irreversible or non-compensatable steps would run again",
    )
    retry.add_argument("--actor", help="who retries (recorded in the audit trail)")
    retry.add_argument("--reason", help="why (recorded in the audit trail)")

    start = _command(runs_sub, common, "start", commands.runs_start, "start a run", json_flag=True)
    start.add_argument("workflow", metavar="WORKFLOW", help="a workflow registered with the app")
    start.add_argument("--trigger", help="the trigger to start through (default: the first)")
    start.add_argument(
        "--payload",
        type=json_object,
        metavar="JSON",
        help="the trigger payload, a JSON object (or @FILE, @- for stdin); default: {}",
    )
    start.add_argument(
        "--idempotency-key",
        type=idempotency_key,
        metavar="KEY",
        help="start at most one run of the workflow with this key: again, it prints the run "
        "the key started (same trigger and payload, and --priority if given) instead of "
        "starting another",
    )
    start.add_argument(
        "--priority",
        type=priority,
        metavar="N",
        help="the run's priority, -1000..1000, higher first (default: the workflow's)",
    )
    start.add_argument(
        "--wait",
        action="store_true",
        help="wait for the run to finish; exit 0 completed, 3 failed, 4 cancelled",
    )
    start.add_argument(
        "--timeout",
        type=positive_float,
        metavar="SECONDS",
        help="with --wait: stop waiting after this long (exit 5; the run goes on)",
    )
    _runs_purge(runs_sub, common)


def _runs_purge(runs_sub: Any, common: argparse.ArgumentParser) -> None:
    purge = _command(
        runs_sub,
        common,
        "purge",
        commands.runs_purge,
        "delete finished runs older than a cutoff, with all their rows",
        json_flag=True,
    )
    purge.add_argument(
        "--older-than",
        type=duration,
        required=True,
        metavar="DURATION",
        help="runs last changed longer ago than this: 30d, 12h, 90m",
    )
    purge.add_argument(
        "--status",
        dest="statuses",
        action="append",
        choices=FINISHED,
        help="only runs in this status; repeat for several (default: all three)",
    )
    purge.add_argument("--workflow", help="only runs of this workflow")
    purge.add_argument(
        "--dry-run",
        action="store_true",
        help="delete nothing: print what would be deleted, with the run ids",
    )
    purge.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"runs deleted per transaction (default: {DEFAULT_BATCH_SIZE})",
    )


def _jobs(sub: Any, common: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser(
        "jobs",
        help="the database queue's jobs and dead letters",
        description="Jobs of the database queue (squidmesh_jobs).",
    )
    jobs_sub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)

    listing = _command(
        jobs_sub,
        common,
        "list",
        jobs_commands.jobs_list,
        "list jobs, oldest first: queued, delayed, running (leased) and failed (dead letters)",
        json_flag=True,
    )
    listing.add_argument(
        "--status",
        dest="states",
        action="append",
        choices=JOB_STATES,
        help="only jobs in this state; repeat for several",
    )
    listing.add_argument("--queue", type=queue_name, help="only jobs of this queue")
    listing.add_argument("--workflow", help="only jobs of this workflow")
    listing.add_argument("--run", type=run_id, metavar="RUN_ID", help="only jobs of this run")
    listing.add_argument(
        "--limit", type=positive_int, default=50, help="at most this many (default: 50)"
    )

    show = _command(
        jobs_sub, common, "show", jobs_commands.jobs_show, "show one job", json_flag=True
    )
    show.add_argument("job_id", type=job_id, metavar="JOB_ID", help=JOB_ID_HELP)

    retry = _command(
        jobs_sub,
        common,
        "retry",
        jobs_commands.jobs_retry,
        "put a failed job (a dead letter) back in its queue, due now",
        json_flag=True,
    )
    retry.add_argument("job_id", type=job_id, metavar="JOB_ID", help=JOB_ID_HELP)

    discard = _command(
        jobs_sub,
        common,
        "discard",
        jobs_commands.jobs_discard,
        "delete a failed job (a dead letter)",
        json_flag=True,
    )
    discard.add_argument("job_id", type=job_id, metavar="JOB_ID", help=JOB_ID_HELP)
    discard.add_argument(
        "--force",
        action="store_true",
        help="discard it even though its run waits for it (the run then never goes on)",
    )

    _command(
        jobs_sub,
        common,
        "stats",
        jobs_commands.jobs_stats,
        "per queue: jobs in each state and how long the oldest due job has waited",
        json_flag=True,
    )


def _queues(sub: Any, common: argparse.ArgumentParser) -> None:
    queues = sub.add_parser(
        "queues",
        help="limits on the database queue's queues: concurrency and rate",
        description="Limits on queues of the database queue (squidmesh_queue_limits).",
    )
    queues_sub = queues.add_subparsers(dest="queues_command", metavar="ACTION", required=True)
    for name in ("list", "show"):
        _command(
            queues_sub,
            common,
            name,
            queues_commands.queues_list,
            "list the queues with limits, their running jobs and rate buckets",
            json_flag=True,
        )
    limit = _command(
        queues_sub,
        common,
        "limit",
        queues_commands.queues_limit,
        "set (replace) a queue's limits; workers apply them from their next claim",
        json_flag=True,
    )
    limit.add_argument("queue", type=queue_name, metavar="NAME", help="the queue")
    limit.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="at most N of the queue's jobs running at once, over every worker",
    )
    limit.add_argument(
        "--rate",
        type=rate_limit,
        metavar="COUNT/PERIOD",
        help="at most COUNT jobs started per PERIOD: 100/1m, 5/s, 10/30s, 1000/1h",
    )
    clear = _command(
        queues_sub,
        common,
        "clear",
        queues_commands.queues_clear,
        "remove every limit of a queue",
        json_flag=True,
    )
    clear.add_argument("queue", type=queue_name, metavar="NAME", help="the queue")


def _workflows(sub: Any, common: argparse.ArgumentParser) -> None:
    workflows = sub.add_parser(
        "workflows",
        help="the workflows the app holds, with versions, triggers and cron schedules",
        description="The workflows the app's client holds.",
    )
    workflows_sub = workflows.add_subparsers(
        dest="workflows_command", metavar="ACTION", required=True
    )
    _command(
        workflows_sub,
        common,
        "list",
        workflows_commands.workflows_list,
        "list workflows with their versions, triggers and cron schedules",
        json_flag=True,
    )
    show = _command(
        workflows_sub,
        common,
        "show",
        workflows_commands.workflows_show,
        "show a workflow's versions, steps, triggers and cron schedules",
        json_flag=True,
    )
    show.add_argument("workflow", metavar="WORKFLOW", help="a workflow registered with the app")


def _ui(sub: Any, common: argparse.ArgumentParser) -> None:
    ui = _command(
        sub,
        common,
        "ui",
        inspector.ui,
        "serve the web run inspector (needs the 'ui' extra)",
    )
    ui.add_argument(
        "--host",
        default=inspector.DEFAULT_HOST,
        help=f"the address to bind (default: {inspector.DEFAULT_HOST}); any other than a "
        f"loopback one needs --auth or ${inspector.TOKEN_ENV_VAR}",
    )
    ui.add_argument(
        "--port", type=port, default=inspector.DEFAULT_PORT, help="default: %(default)s"
    )
    ui.add_argument(
        "--auth",
        metavar="MODULE:CALLABLE",
        help="the host's authentication hook: called with each request, returns the actor "
        f"(or None to refuse); alternatively set ${inspector.TOKEN_ENV_VAR} to a token",
    )
    ui.add_argument(
        "--read-only", action="store_true", help="offer no actions, even to signed-in users"
    )
    ui.add_argument(
        "--trace-url",
        metavar="TEMPLATE",
        help="link a run's trace id: a URL holding {trace_id}",
    )
    ui.add_argument(
        "--redact",
        metavar="PATTERNS",
        help="hide the values of these keys everywhere, comma-separated (e.g. '*password*,iban')",
    )
