"""``squidmesh queues``: the limits operators put on queues of the database queue.

- ``queues list`` (also ``queues show``) prints every queue with limits: its concurrency and
  rate limits, how many of its jobs run now and how many claims its rate bucket allows now.
- ``queues limit NAME [--concurrency N] [--rate COUNT/PERIOD]`` sets (replaces) a queue's
  limits; workers enforce them from their next claim (see docs/workers.md, "Flow control").
- ``queues clear NAME`` removes them.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from squidmesh_sdk.cli import render
from squidmesh_sdk.cli.commands import Context
from squidmesh_sdk.cli.errors import EXIT_OK, UsageError
from squidmesh_sdk.client import Client
from squidmesh_sdk.executors.database import DatabaseExecutor
from squidmesh_sdk.store import flow as flow_store
from squidmesh_sdk.store.flow import QueueLimits

__all__ = [
    "MSG_QUEUES_NEED_DATABASE_EXECUTOR",
    "database_queue_client",
    "limits_dict",
    "queues_clear",
    "queues_limit",
    "queues_list",
]

MSG_QUEUES_NEED_DATABASE_EXECUTOR = (
    "queue limits apply to the database queue, but the app's client uses {executor}: its "
    "engine does not read them"
)
MSG_NOTHING_TO_SET = "give --concurrency and/or --rate (to remove the limits: 'queues clear')"


def queues_list(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh queues list``: every queue with limits, and where it stands now."""
    client = database_queue_client(ctx)
    now = client.clock.now()
    with client.database.read() as connection:
        found = flow_store.list_limits(connection)
        running = flow_store.running_per_queue(connection, [limits.queue for limits in found])
    if args.json:
        queues = [limits_dict(limits, now, running.get(limits.queue, 0)) for limits in found]
        ctx.write(render.to_json({"at": now, "queues": queues}))
        return EXIT_OK
    if not found:
        ctx.write("no queue has limits")
        return EXIT_OK
    ctx.write(
        render.table(
            ("QUEUE", "CONCURRENCY", "RUNNING", "RATE", "TOKENS", "NEXT_SLOT_IN"),
            (
                (
                    limits.queue,
                    limits.concurrency if limits.concurrency is not None else "-",
                    running.get(limits.queue, 0),
                    limits.rate.describe() if limits.rate is not None else "-",
                    f"{limits.tokens_at(now):.1f}" if limits.rate is not None else "-",
                    render.duration((limits.next_token_at(now) - now).total_seconds())
                    if limits.rate is not None
                    else "-",
                )
                for limits in found
            ),
        )
    )
    return EXIT_OK


def queues_limit(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh queues limit NAME [--concurrency N] [--rate COUNT/PERIOD]``."""
    if args.concurrency is None and args.rate is None:
        raise UsageError(MSG_NOTHING_TO_SET)
    client = database_queue_client(ctx)
    limits = client.set_queue_limits(args.queue, concurrency=args.concurrency, rate_limit=args.rate)
    now = client.clock.now()
    if args.json:
        ctx.write(render.to_json(limits_dict(limits, now, None)))
    else:
        ctx.write(f"queue {limits.queue}: {_describe(limits)}")
    return EXIT_OK


def queues_clear(args: argparse.Namespace, ctx: Context) -> int:
    """``squidmesh queues clear NAME``: remove every limit of a queue."""
    client = database_queue_client(ctx)
    cleared = client.clear_queue_limits(args.queue)
    if args.json:
        ctx.write(render.to_json({"queue": args.queue, "cleared": cleared}))
    elif cleared:
        ctx.write(f"queue {args.queue}: limits removed")
    else:
        ctx.write(f"queue {args.queue} had no limits")
    return EXIT_OK


def limits_dict(limits: QueueLimits, now: datetime, running: int | None) -> dict[str, Any]:
    """A queue's limits as JSON, with its bucket as it is ``now`` (and ``running`` jobs)."""
    data: dict[str, Any] = {
        "queue": limits.queue,
        "concurrency": limits.concurrency,
        "rate": None,
        "updated_at": limits.updated_at,
    }
    if limits.rate is not None:
        data["rate"] = {
            "count": limits.rate.count,
            "per_seconds": limits.rate.period_seconds,
            "tokens": limits.tokens_at(now),
            "next_slot_at": limits.next_token_at(now),
        }
    if running is not None:
        data["running"] = running
    return data


def _describe(limits: QueueLimits) -> str:
    parts = []
    if limits.concurrency is not None:
        parts.append(f"at most {limits.concurrency} running")
    if limits.rate is not None:
        parts.append(f"at most {limits.rate.count} started per {limits.rate.period_seconds:g}s")
    return ", ".join(parts)


def database_queue_client(ctx: Context, message: str = MSG_QUEUES_NEED_DATABASE_EXECUTOR) -> Client:
    """The app's client, refused with ``message`` unless it queues work in the database.

    The ``queues`` and ``jobs`` commands read the database queue's tables.
    """
    client = ctx.client()
    if not isinstance(client.executor, DatabaseExecutor):
        raise UsageError(message.format(executor=type(client.executor).__name__))
    return client
