"""docs/workers.md, "Flow control": priorities, per-key concurrency and queue limits."""

from datetime import timedelta

from pydantic import BaseModel

from squidmesh_sdk import (
    COMPLETE,
    Client,
    ConcurrencyLimit,
    DatabaseExecutor,
    RateLimit,
    Worker,
    Workflow,
    manual,
)


class Sync(BaseModel):
    customer_id: str


# At most two steps of one customer's syncs run at once, across every worker; the steps of
# other customers go ahead meanwhile.
sync = Workflow(
    "customer_sync",
    triggers=[manual("sync", payload=Sync)],
    concurrency=ConcurrencyLimit("payload.customer_id", limit=2),
)


@sync.step
def fetch(customer_id: str) -> dict[str, int]:
    return {"records": 3}


# One call at a time to the partner's API per account, whichever customer asks.
@sync.step(concurrency=ConcurrencyLimit("context.account", limit=1, scope="partner_api"))
def push(records: int) -> dict[str, str]:
    return {"pushed": f"{records} records"}


@sync.step
def pick_account() -> dict[str, str]:
    return {"account": "acct-1"}


sync.chain(fetch, pick_account, push, COMPLETE)


def operate(client: Client) -> None:
    # An operator's limits on a queue: at most 8 of its jobs running, 100 started a minute.
    client.set_queue_limits(
        "default", concurrency=8, rate_limit=RateLimit(100, per=timedelta(minutes=1))
    )
    print(client.queue_limits())


def start(client: Client) -> None:
    client.start_run(sync, {"customer_id": "c-1"})
    # A customer waiting on the phone: this run's jobs are claimed before the backlog's.
    client.start_run(sync, {"customer_id": "c-2"}, priority=100)


def main(database: str = "sqlite:///flow_control.db") -> list[str]:
    with Client(database, [sync], executor=DatabaseExecutor()) as client:
        client.migrate()
        operate(client)
        start(client)
        runs = client.list_runs(workflow=sync)
        with Worker(client, concurrency=4, poll_interval=0.1):
            finished = [client.wait_for_run(run.id, timeout=30) for run in runs]
        client.clear_queue_limits("default")
        return [run.status for run in finished]


if __name__ == "__main__":
    print(main())
