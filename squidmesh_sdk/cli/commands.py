"""What each ``squidmesh`` command does, given its parsed arguments.

Every handler takes ``(args, ctx)`` and returns an exit code; errors are raised (library
errors as they are, :class:`~squidmesh_sdk.cli.errors.CliError` for the CLI's own) and reported
by :func:`squidmesh_sdk.cli.main`.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import TextIO

from squidmesh_sdk.cli import logs, render, waiting
from squidmesh_sdk.cli.app import app_spec, load_client
from squidmesh_sdk.cli.errors import EXIT_OK, CommandFailed, UsageError
from squidmesh_sdk.client import Client
from squidmesh_sdk.errors import UnsafeReplay, UnsafeRetry
from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.executors.inline import InlineExecutor
from squidmesh_sdk.executors.worker import Worker
from squidmesh_sdk.store import migrations
from squidmesh_sdk.store.records import Run

__all__ = [
    "MSG_DIALECT_NEEDS_PRINT_SQL",
    "MSG_JSON_WITH_PRINT_SQL",
    "MSG_SCHEMA_BEHIND",
    "MSG_SCHEMA_NEWER",
    "MSG_TIMEOUT_NEEDS_FOLLOW",
    "MSG_TIMEOUT_NEEDS_WAIT",
    "MSG_UNKNOWN_TRIGGER",
    "MSG_UNKNOWN_WORKFLOW",
    "MSG_UNSAFE_REPLAY",
    "MSG_UNSAFE_RETRY",
    "MSG_UNSUPPORTED_DIALECT",
    "MSG_WAITING_INLINE",
    "MSG_WORKER_NEEDS_DATABASE_EXECUTOR",
    "Context",
    "graph",
    "migrate",
    "runs_approve",
    "runs_cancel",
    "runs_explain",
    "runs_list",
    "runs_purge",
    "runs_reject",
    "runs_replay",
    "runs_retry",
    "runs_show",
    "runs_signal",
    "runs_start",
    "runs_unblock",
    "worker",
]

MSG_UNKNOWN_WORKFLOW = "unknown workflow {workflow!r}; the app registers: {known}"
MSG_UNKNOWN_TRIGGER = "workflow {workflow!r} has no trigger {trigger!r}; it declares: {known}"
MSG_WORKER_NEEDS_DATABASE_EXECUTOR = (
    "'squidmesh worker' delivers jobs of the database queue, but the app's client uses "
    "{executor}: create it with executor=DatabaseExecutor()"
)
MSG_UNSAFE_REPLAY = (
    "replaying run {run_id} would repeat irreversible or non-compensatable steps ({steps}); "
    "check that it is safe, then pass --allow-irreversible"
)
MSG_UNSAFE_RETRY = (
    "retrying run {run_id} would run irreversible or non-compensatable steps again ({steps}); "
    "check that it is safe, then pass --allow-irreversible"
)
MSG_WAITING_INLINE = (
    "waiting {delay} (until {at}) for delayed work, a retry or a wait: the app's in-process "
    "executor runs it in this process; Ctrl-C stops waiting and leaves the run unfinished"
)
MSG_DIALECT_NEEDS_PRINT_SQL = "--dialect only goes with --print-sql"
MSG_TIMEOUT_NEEDS_WAIT = "--timeout only goes with --wait"
MSG_TIMEOUT_NEEDS_FOLLOW = "--timeout only goes with --follow"
MSG_JSON_WITH_PRINT_SQL = "--json does not go with --print-sql"
MSG_UNSUPPORTED_DIALECT = "squidmesh has migrations for sqlite and postgresql, not {dialect!r}"
MSG_SCHEMA_BEHIND = (
    "the squidmesh schema is at version {current}, this library needs {latest}; "
    "run 'squidmesh migrate'"
)
MSG_SCHEMA_NEWER = (
    "the squidmesh schema is at version {current}, newer than this library's {latest}; "
    "upgrade squidmesh_sdk"
)

_DIALECTS = ("sqlite", "postgresql")
_INLINE_POLL = 1.0  # seconds between looks at the in-process queue while waiting


class Context:
    """What handlers share: the output streams and the app's client, loaded on first use.

    Args:
        app: The ``--app`` value, if given (else ``SQUIDMESH_APP`` is read).
        out: Where results go.
        err: Where log lines go (worker).
    """

    def __init__(self, app: str | None, out: TextIO, err: TextIO) -> None:
        self.app = app
        self.out = out
        self.err = err
        self._client: Client | None = None

    def client(self) -> Client:
        """The app's client, imported (and built) the first time it is asked for.

        Raises:
            UsageError: no app, or it cannot be loaded.
        """
        if self._client is None:
            self._client = load_client(app_spec(self.app))
        return self._client

    def note(self, text: str) -> None:
        """Print a progress note on the error stream (results stay alone on the output)."""
        self.err.write(f"squidmesh: {text}\n")
        self.err.flush()

    def write(self, text: str) -> None:
        """Print ``text`` on the output stream, adding a newline if it lacks one."""
        self.out.write(text if text.endswith("\n") else text + "\n")

    def write_now(self, text: str) -> None:
        """:meth:`write`, flushed at once (progress while a command waits)."""
        self.write(text)
        self.out.flush()

    def close(self) -> None:
        """Close the client, if one was loaded."""
        if self._client is not None:
            self._client.close()
            self._client = None


# -- migrate -------------------------------------------------------------------------------


def migrate(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh migrate [--print-sql [--dialect D] | --check] [--json]``."""
    if args.print_sql:
        if args.json:
            raise UsageError(MSG_JSON_WITH_PRINT_SQL)
        dialect = args.dialect or ctx.client().database.dialect
        if dialect not in _DIALECTS:
            raise CommandFailed(MSG_UNSUPPORTED_DIALECT.format(dialect=dialect))
        ctx.write(migrations.sql(dialect))
        return EXIT_OK
    if args.dialect:
        raise UsageError(MSG_DIALECT_NEEDS_PRINT_SQL)
    client = ctx.client()
    latest = migrations.LATEST_VERSION
    if args.check:
        with client.database.read() as connection:
            current = migrations.current_version(connection)
        if args.json:
            ctx.write(
                render.to_json(
                    {
                        "current_version": current,
                        "latest_version": latest,
                        "up_to_date": current == latest,
                    }
                )
            )
        if current < latest:
            raise CommandFailed(MSG_SCHEMA_BEHIND.format(current=current, latest=latest))
        if current > latest:
            raise CommandFailed(MSG_SCHEMA_NEWER.format(current=current, latest=latest))
        if not args.json:
            ctx.write(f"the squidmesh schema is current (version {current})")
        return EXIT_OK
    applied = client.migrate()
    if args.json:
        ctx.write(render.to_json({"applied": applied, "current_version": latest}))
    elif applied:
        listed = ", ".join(str(version) for version in applied)
        ctx.write(f"applied migrations {listed}; the squidmesh schema is at version {latest}")
    else:
        ctx.write(f"nothing to apply; the squidmesh schema is at version {latest}")
    return EXIT_OK


# -- worker --------------------------------------------------------------------------------


def worker(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh worker``: run a :class:`Worker` until SIGTERM / SIGINT; exit 0 when stopped."""
    client = ctx.client()
    executor = client.executor
    if not isinstance(executor, DatabaseExecutor):
        raise UsageError(
            MSG_WORKER_NEEDS_DATABASE_EXECUTOR.format(executor=type(executor).__name__)
        )
    client.runtime.check_schema()  # fail now, not in the worker's retry loop
    runner = Worker(
        client,
        queues=args.queues or (executor.queue,),
        concurrency=args.concurrency,
        lease=args.lease,
        poll_interval=args.poll_interval,
        purge_after=args.purge_after,
    )
    with logs.worker_logging(args.log_level, ctx.err, args.log_format):
        runner.run(install_signal_handlers=True)
    return EXIT_OK


# -- runs: read ----------------------------------------------------------------------------


def runs_list(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs list``: a table (or JSON) of runs, newest first.

    A workflow the app does not register is a usage error, unless runs of that name are stored
    (an old deploy's workflow, still to be looked at).
    """
    client = ctx.client()
    runs = client.list_runs(
        workflow=args.workflow, status=args.status, limit=args.limit, after=args.after
    )
    if (
        args.workflow is not None
        and args.workflow not in client.workflows
        and not runs
        and not client.list_runs(workflow=args.workflow, limit=1)
    ):
        raise UsageError(unknown_workflow(client, args.workflow))
    if args.json:
        next_after = runs[-1].id if len(runs) == args.limit else None
        ctx.write(
            render.to_json(
                {"runs": [render.run_dict(run) for run in runs], "next_after": next_after}
            )
        )
        return EXIT_OK
    if not runs:
        ctx.write("no runs")
        return EXIT_OK
    now = client.clock.now()
    ctx.write(
        render.table(
            ("ID", "WORKFLOW", "TRIGGER", "STATUS", "CURRENT_STEP", "INSERTED_AT", "DURATION"),
            (
                (
                    r.id,
                    r.workflow,
                    r.trigger,
                    r.status,
                    r.current_step,
                    r.inserted_at,
                    render.duration(render.run_duration(r, now)),
                )
                for r in runs
            ),
        )
    )
    return EXIT_OK


def runs_show(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs show RUN_ID [--follow [--timeout S]]``: the run with its history.

    With ``--follow``, progress lines as the run goes on, then the run once it finished; the
    exit code is its outcome (see :mod:`squidmesh_sdk.cli.waiting`).
    """
    if args.timeout is not None and not args.follow:
        raise UsageError(MSG_TIMEOUT_NEEDS_FOLLOW)
    if args.follow:
        return waiting.follow(
            ctx.client(),
            args.run_id,
            timeout=args.timeout,
            as_json=args.json,
            write=ctx.write_now,
            note=ctx.note,
        )
    run = ctx.client().inspect_run(args.run_id, include_history=True)
    if args.json:
        ctx.write(render.to_json(render.run_dict(run, history=True)))
        return EXIT_OK
    ctx.write(render.run_text(run))
    return EXIT_OK


def runs_explain(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs explain RUN_ID``: reason, step, details and what can be done next."""
    explanation = ctx.client().explain_run(args.run_id)
    data = {"run_id": args.run_id, **explanation.to_dict()}
    if args.json:
        ctx.write(render.to_json(data))
        return EXIT_OK
    ctx.write(render.explanation_text(args.run_id, explanation))
    return EXIT_OK


# -- runs: act -----------------------------------------------------------------------------


def runs_start(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs start WORKFLOW [--trigger T] [--payload JSON] [options]``.

    Options: ``--idempotency-key K``, ``--priority N``, ``--wait [--timeout S]``. With
    ``--wait`` the exit code is the run's outcome (see :mod:`squidmesh_sdk.cli.waiting`).
    ``--json`` prints the run with ``"created"``: ``false`` when the key had started it.
    """
    if args.timeout is not None and not args.wait:
        raise UsageError(MSG_TIMEOUT_NEEDS_WAIT)
    client = ctx.client()
    definition = client.workflows.get(args.workflow)
    if definition is None:
        raise UsageError(unknown_workflow(client, args.workflow))
    if args.trigger is not None and args.trigger not in definition.triggers:
        raise UsageError(
            MSG_UNKNOWN_TRIGGER.format(
                workflow=args.workflow, trigger=args.trigger, known=", ".join(definition.triggers)
            )
        )
    handle = client.start(
        args.workflow,
        args.payload or {},
        trigger=args.trigger,
        idempotency_key=args.idempotency_key,
        priority=args.priority,
    )
    run = handle.run
    if handle.created:
        done = f"started run {run.id} of {run.workflow} via {run.trigger}"
    else:
        done = f"run {run.id} of {run.workflow} was already started with this idempotency key"
    if not args.wait:
        run = _finish_inline_work(ctx, run)
        if args.json:
            ctx.write(render.to_json({**render.run_dict(run), "created": handle.created}))
        else:
            ctx.write(f"{done} ({_state(run)})")
        return EXIT_OK
    if not args.json:
        ctx.write_now(f"{done} ({_state(run)})")
    run = waiting.wait(client, _finish_inline_work(ctx, run), args.timeout, note=ctx.note)
    if args.json:
        ctx.write(render.to_json({**render.run_dict(run), "created": handle.created}))
    else:
        ctx.write(waiting.finished_line(run))
    return waiting.outcome(run)


def runs_approve(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs approve RUN_ID --actor A [--comment C] [--metadata JSON] [--step S]``."""
    run = ctx.client().approve_run(
        args.run_id,
        actor=args.actor,
        comment=args.comment,
        metadata=args.metadata,
        step=args.step,
    )
    return _report(ctx, args, run, f"approved run {run.id}")


def runs_reject(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs reject RUN_ID --actor A [--comment C] [--metadata JSON] [--step S]``."""
    run = ctx.client().reject_run(
        args.run_id,
        actor=args.actor,
        comment=args.comment,
        metadata=args.metadata,
        step=args.step,
    )
    return _report(ctx, args, run, f"rejected run {run.id}")


def runs_unblock(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs unblock RUN_ID [--actor A] [--comment C] [--metadata JSON] [--step S]``."""
    run = ctx.client().unblock_run(
        args.run_id,
        actor=args.actor,
        comment=args.comment,
        metadata=args.metadata,
        step=args.step,
    )
    return _report(ctx, args, run, f"unblocked run {run.id}")


def runs_signal(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs signal RUN_ID NAME [--json-payload JSON] [--idempotency-key K]``.

    ``--json`` prints the signal (its status, the step that consumed it, ``duplicate``) and
    the run as it is left.
    """
    client = ctx.client()
    signal = client.signal(
        args.run_id, args.name, args.json_payload, idempotency_key=args.idempotency_key
    )
    run = _finish_inline_work(ctx, client.inspect_run(args.run_id))
    if args.json:
        ctx.write(render.to_json({"signal": signal.to_dict(), "run": render.run_dict(run)}))
        return EXIT_OK
    if signal.duplicate:
        done = f"signal {signal.name!r} was already delivered to run {run.id} with this key"
    elif signal.status == "consumed":
        done = f"signal {signal.name!r} delivered to run {run.id}, step {signal.step}"
    else:
        done = f"signal {signal.name!r} kept for run {run.id} until a step waits for it"
    ctx.write(f"{done} ({_state(run)})")
    return EXIT_OK


def runs_cancel(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs cancel RUN_ID [--actor A] [--reason TEXT]``.

    Cancelled at once, or ``cancelling`` if a step runs; recorded in the audit trail.
    """
    run = ctx.client().cancel_run(args.run_id, actor=args.actor, reason=args.reason)
    if run.status == "cancelled":
        return _report(ctx, args, run, f"cancelled run {run.id}")
    return _report(ctx, args, run, f"cancelling run {run.id}; it stops when its running step ends")


def runs_replay(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs replay RUN_ID [--allow-irreversible] [--actor A] [--reason R]``."""
    try:
        run = ctx.client().replay_run(
            args.run_id,
            allow_irreversible=args.allow_irreversible,
            actor=args.actor,
            reason=args.reason,
        )
    except UnsafeReplay as exc:
        steps = ", ".join(str(step.get("step")) for step in exc.steps)
        raise CommandFailed(MSG_UNSAFE_REPLAY.format(run_id=exc.run_id, steps=steps)) from exc
    return _report(ctx, args, run, f"replayed run {args.run_id} as run {run.id}")


def runs_retry(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs retry RUN_ID [--from-step S] [--allow-irreversible] [--actor A] ...``."""
    try:
        run = ctx.client().retry_run(
            args.run_id,
            from_step=args.from_step,
            allow_irreversible=args.allow_irreversible,
            actor=args.actor,
            reason=args.reason,
        )
    except UnsafeRetry as exc:
        steps = ", ".join(str(step.get("step")) for step in exc.steps)
        raise CommandFailed(MSG_UNSAFE_RETRY.format(run_id=exc.run_id, steps=steps)) from exc
    return _report(ctx, args, run, f"retrying run {run.id} from step {run.current_step or '-'}")


def runs_purge(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh runs purge --older-than D [--status S ...] [--workflow W] [--dry-run]``."""
    result = ctx.client().purge_runs(
        older_than=args.older_than,
        statuses=args.statuses,
        workflow=args.workflow,
        dry_run=args.dry_run,
        batch_size=args.batch_size,
    )
    ctx.write(render.to_json(result.to_dict()) if args.json else render.purge_text(result))
    return EXIT_OK


# -- graph ---------------------------------------------------------------------------------


def graph(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh graph WORKFLOW [--format mermaid|json]``."""
    client = ctx.client()
    definition = client.workflows.get(args.workflow)
    if definition is None:
        raise UsageError(unknown_workflow(client, args.workflow))
    if args.format == "json":
        ctx.write(render.to_json(definition.to_dict()))
    else:
        ctx.write(definition.to_mermaid())
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------


def unknown_workflow(client: Client, workflow: str) -> str:
    known = ", ".join(sorted(client.workflows)) or "none"
    return MSG_UNKNOWN_WORKFLOW.format(workflow=workflow, known=known)


def _report(ctx: Context, args: argparse.Namespace, run: Run, done: str) -> int:
    run = _finish_inline_work(ctx, run)
    if args.json:
        ctx.write(render.to_json(render.run_dict(run)))
    else:
        ctx.write(f"{done} ({_state(run)})")
    return EXIT_OK


def _finish_inline_work(ctx: Context, run: Run) -> Run:
    """With the in-process executor, deliver the run's delayed work before exiting.

    ``InlineExecutor`` keeps delayed jobs (a retry's backoff, a ``wait`` step) in this
    process's memory: exiting with one queued would leave the run ``retrying`` (or waiting)
    for good. So the command stays until nothing is queued, telling on stderr what it waits
    for; a run that pauses or finishes queues nothing. Ctrl-C stops waiting (exit 130) and
    leaves the run where it is, as any exit of an in-process executor does.
    """
    client = ctx.client()
    executor = client.executor
    if not isinstance(executor, InlineExecutor) or not executor.run_immediately:
        return run
    noted: datetime | None = None
    while (due := executor.next_due()) is not None:
        delay = (due - client.clock.now()).total_seconds()
        if delay <= 0:
            executor.run_due()
            continue
        if due != noted:
            noted = due
            ctx.note(
                MSG_WAITING_INLINE.format(delay=render.duration(delay), at=render.human_time(due))
            )
        time.sleep(min(delay, _INLINE_POLL))
    return client.inspect_run(run.id)


def _state(run: Run) -> str:
    if run.current_step:
        return f"status {run.status}, current step {run.current_step}"
    return f"status {run.status}"
