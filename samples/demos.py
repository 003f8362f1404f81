"""How each sample is run end to end: its payload, and what an operator does along the way."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import shlex
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from samples import local_ledger_checkout
from squidmesh_sdk import Client, Run, cli

Say = Callable[[str], None]


@dataclass(frozen=True)
class Demo:
    """A sample's demonstration.

    Attributes:
        payload: Builds the trigger payload; runs inside :meth:`setup`'s context.
        trigger: The trigger to start through (the first declared one by default).
        setup: Prepares what the sample needs (a stub server, a table) for the run's duration.
        on_progress: Called on every poll with the current run, to play the operator's part.
    """

    payload: Callable[[dict[str, Any]], dict[str, Any]] = lambda _env: {}
    trigger: str | None = None
    setup: Callable[[Client], Any] | None = None
    on_progress: Callable[[Client, Run, Say], None] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


@contextmanager
def gateway_stub(_client: Client) -> Iterator[dict[str, Any]]:
    """A local HTTP server playing the payment gateway: it answers ``retry_required``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "retry_required"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"gateway_url": f"http://127.0.0.1:{server.server_address[1]}/payments"}
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def ledger_table(client: Client) -> Iterator[dict[str, Any]]:
    """The host's own ``local_ledger_entries`` table, beside squidmesh's."""
    local_ledger_checkout.metadata.create_all(client.database.engine)
    yield {}


def ledger_entries(client: Client, run_id: str) -> list[str]:
    """The ledger rows the run wrote (none when its transaction rolled back)."""
    table = local_ledger_checkout.ledger_entries
    with client.database.engine.connect() as connection:
        rows = connection.scalars(
            sa.select(table.c.entry).where(table.c.run_id == run_id).order_by(table.c.id)
        )
        return list(rows)


def approve_when_paused(client: Client, run: Run, say: Say) -> None:
    """Play the approver: approve the run through the ``squidmesh`` CLI once it waits."""
    if run.status != "paused":
        return
    argv = [
        "--app",
        "samples.app:client",
        "runs",
        "approve",
        run.id,
        "--actor",
        "sample-operator",
        "--comment",
        "approved by the sample",
        "--metadata",
        '{"ticket": "SAMPLE-1"}',
    ]
    say("the run waits for approval; approving it with the CLI:")
    say("$ squidmesh " + " ".join(shlex.quote(arg) for arg in argv))
    os.environ["SQUIDMESH_SAMPLES_DATABASE"] = client.database.engine.url.render_as_string(
        hide_password=False
    )
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = cli.main(argv)
    for line in output.getvalue().splitlines():
        say(f"  {line}")
    if code != 0:
        raise RuntimeError(f"squidmesh runs approve exited with {code}")


def cancel_while_waiting(client: Client, run: Run, say: Say) -> None:
    """Cancel the run once it sits in its durable wait: no step runs, so it stops at once."""
    if run.status == "running" and run.current_step == "record_delivery":
        say("the run sits in a 10 s durable wait; cancelling it (it stops at once)")
        client.cancel_run(run.id)


DEMOS: dict[str, Demo] = {
    "payment_recovery": Demo(
        payload=lambda env: {
            "account_id": "acct-1",
            "invoice_id": "inv-1",
            "attempt_id": "att-1",
            "gateway_url": env["gateway_url"],
        },
        setup=gateway_stub,
    ),
    "dependency_recovery": Demo(
        payload=lambda _env: {"account_id": "acct-1", "invoice_id": "inv-1"}
    ),
    "manual_approval": Demo(
        payload=lambda _env: {"account_id": "acct-1"}, on_progress=approve_when_paused
    ),
    "daily_digest": Demo(
        payload=lambda _env: {
            "channel": "ops",
            "digest_date": datetime.now(UTC).date().isoformat(),
        },
        trigger="manual_digest",
    ),
    "local_ledger_checkout": Demo(
        payload=lambda _env: {"account_id": "acct-1"}, setup=ledger_table
    ),
    "saga_checkout": Demo(payload=lambda _env: {"order_id": "ord-1", "amount_cents": 4200}),
    "retry_verification": Demo(),
    "cancellable_wait": Demo(on_progress=cancel_while_waiting),
    "order_pipeline": Demo(
        payload=lambda _env: {
            "order_id": "ord-7",
            "lines": [
                {"sku": "desk", "quantity": 2, "unit_cents": 45_000},
                {"sku": "chair", "quantity": 4, "unit_cents": 12_500},
                {"sku": "lamp", "quantity": 1, "unit_cents": 3_900},
            ],
        },
        on_progress=approve_when_paused,
    ),
}
