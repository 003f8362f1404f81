"""Workflows, clients and worker entry points shared by the engine executor tests.

Worker processes run ``python -m tests.integration.executors.engines celery DB_URL BROKER_URL
[worker options]``
or ``... procrastinate DB_URL``: a real ``celery worker`` (solo pool) or Procrastinate worker,
importing the same workflows as the test that spawned it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import procrastinate
import sqlalchemy as sa
from celery import Celery

from squidmesh_sdk import COMPLETE, Client, Retry, Run, StepContext, Workflow, cron, manual
from squidmesh_sdk.clock import Clock
from squidmesh_sdk.executors.celery import CeleryExecutor
from squidmesh_sdk.executors.procrastinate import ProcrastinateExecutor
from tests.integration.worker.app import WORKFLOWS as WORKER_WORKFLOWS
from tests.integration.worker.conftest import attempts_by_step, settled, wait_until

QUEUE = "squidmesh"
VISIBILITY_TIMEOUT = 2.0
"""Seconds before Redis hands an unacknowledged message (its worker died) to another worker."""
REDELIVER_AFTER = 3.0
"""Seconds before a published message whose delivery has not finished is published again."""
HEARTBEAT = 0.5
STALLED_AFTER = 2.0


def _fan_out() -> Workflow:
    """A root, three branches (one fails once, retried 1 s later), a join, a 1 s wait, a tail."""
    wf = Workflow("fan_out", triggers=[manual("go")])

    @wf.step
    def root() -> dict[str, Any]:
        return {"root": "done"}

    @wf.step(after=[root])
    def left() -> dict[str, Any]:
        return {"left": "done"}

    @wf.step(after=[root])
    def right() -> dict[str, Any]:
        return {"right": "done"}

    @wf.step(after=[root], retry=Retry(max_attempts=3, backoff=Retry.fixed(1.0)))
    def flaky(ctx: StepContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise ConnectionError("the first attempt fails")
        return {"flaky": ctx.attempt}

    @wf.step(after=[left, right, flaky])
    def join(left: str, right: str, flaky: int) -> dict[str, Any]:
        return {"joined": f"{left}/{right}/{flaky}"}

    settle = wf.wait("settle", duration=1, after=[join])

    @wf.step(after=[settle])
    def finish() -> dict[str, Any]:
        return {"finished": True}

    return wf


def _nightly() -> Workflow:
    wf = Workflow("nightly", triggers=[cron("nightly", "0 3 * * *")])

    @wf.step
    def report(ctx: StepContext) -> dict[str, Any]:
        assert ctx.schedule is not None, "a cron run carries its schedule identity"
        return {"window": ctx.schedule["intended_window"]["start_at"]}

    wf.chain(report, COMPLETE)
    return wf


WORKFLOWS = (*WORKER_WORKFLOWS, _fan_out(), _nightly())


def run_mixed_workload(client: Client) -> list[Run]:
    """Start a fan-out run, five linear runs and one with a retry delay and a wait; wait for
    them all and check what each recorded. Returns the runs."""
    fan_out = client.start_run("fan_out")
    linear = [client.start_run("five_steps") for _ in range(5)]
    delayed = client.start_run("delayed")
    runs = [fan_out, *linear, delayed]
    wait_until(settled(client, runs), what="every run to finish")
    assert client.inspect_run(fan_out.id).context["joined"] == "done/done/2"
    assert attempts_by_step(client, fan_out.id) == {
        "root": ["completed"],
        "left": ["completed"],
        "right": ["completed"],
        "flaky": ["failed", "completed"],
        "join": ["completed"],
        "settle": ["completed"],
        "finish": ["completed"],
    }
    assert {client.inspect_run(run.id).status for run in runs} == {"completed"}
    assert attempts_by_step(client, delayed.id)["flaky"] == ["failed", "completed"]
    return runs


def celery_app(broker_url: str) -> Celery:
    """A Celery app on ``broker_url`` that gives a dead worker's messages back quickly."""
    app = Celery("squidmesh_tests", broker=broker_url)
    app.conf.update(
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "unacked_restore_interval": 0.5,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    return app


def celery_client(
    database_url: str, broker_url: str, *, clock: Clock | None = None, **options: Any
) -> Client:
    """A client whose work goes through Celery on ``broker_url``."""
    executor = CeleryExecutor(
        celery_app(broker_url), queue=QUEUE, relay_lease=1.0, redeliver_after=REDELIVER_AFTER,
        **options,
    )  # fmt: skip
    return Client(database_url, WORKFLOWS, executor=executor, clock=clock)


def procrastinate_conninfo(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL."""
    url = sa.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def procrastinate_client(database_url: str, *, clock: Clock | None = None) -> Client:
    """A client whose work goes through Procrastinate jobs in the same database."""
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=procrastinate_conninfo(database_url))
    )
    executor = ProcrastinateExecutor(
        app, queue=QUEUE, stalled_after=STALLED_AFTER, housekeeping_cron="* * * * * */1"
    )
    return Client(database_url, WORKFLOWS, executor=executor, clock=clock)


async def run_procrastinate_worker(app: procrastinate.App, **options: Any) -> None:
    """Run a Procrastinate worker on the squidmesh queue until cancelled."""
    async with app.open_async():
        await app.run_worker_async(
            queues=[QUEUE],
            concurrency=2,
            fetch_job_polling_interval=0.2,
            update_heartbeat_interval=HEARTBEAT,
            stalled_worker_timeout=STALLED_AFTER,
            **options,
        )


def main(argv: list[str]) -> None:
    """Run one engine worker process until it is signalled."""
    logging.basicConfig(level=logging.WARNING)
    engine, database_url = argv[0], argv[1]
    if engine == "celery":
        client = celery_client(database_url, argv[2])
        executor = client.executor
        assert isinstance(executor, CeleryExecutor)
        pool = argv[3:] or ["--pool=solo"]  # e.g. --pool=prefork --max-tasks-per-child=1
        executor.app.worker_main(
            [
                "worker",
                *pool,
                f"--queues={QUEUE}",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
    else:
        client = procrastinate_client(database_url)
        executor = client.executor
        assert isinstance(executor, ProcrastinateExecutor)
        asyncio.run(run_procrastinate_worker(executor.app, install_signal_handlers=True))
    client.close()


if __name__ == "__main__":
    main(sys.argv[1:])
