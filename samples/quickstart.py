"""Quickstart: declare a workflow, run it with a worker on SQLite, test it in memory.

``python -m samples.quickstart`` runs :func:`main`: a worker and a run on a temporary SQLite
file. ``squidmesh --app samples.quickstart:client ...`` drives the same workflow from a shell
(see docs/quickstart.md). docs/quickstart.md shows this file's code verbatim, and
tests/docs/test_docs_code.py keeps it so.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

from squidmesh_sdk import COMPLETE, Client, DatabaseExecutor, Retry, Run, Worker, Workflow, manual
from squidmesh_sdk.testing import WorkflowEnvironment


class Signup(BaseModel):
    email: str
    plan: str = "free"


onboarding = Workflow("onboarding", triggers=[manual("signup", payload=Signup)])


@onboarding.step  # parameters are looked up by name in the payload and the context
def create_account(email: str, plan: str) -> dict[str, str]:
    return {"account_id": f"acct_{email.split('@')[0]}", "plan": plan}


@onboarding.step(retry=Retry(max_attempts=3, backoff=Retry.exponential(min=1, max=30)))
def send_welcome_email(email: str, account_id: str) -> dict[str, str]:
    return {"welcome_email": f"sent to {email} for {account_id}"}


onboarding.chain(create_account, send_welcome_email, COMPLETE)


def client() -> Client:
    """The app's client; `squidmesh --app samples.quickstart:client` calls this."""
    database = os.environ.get("DATABASE_URL", "sqlite:///quickstart.db")
    return Client(database, [onboarding], executor=DatabaseExecutor())


def run_once(database: str) -> Run:
    """Migrate, start a worker, start a run and wait for it to finish."""
    with Client(database, [onboarding], executor=DatabaseExecutor()) as app:
        app.migrate()  # creates or upgrades squidmesh's tables; safe at every start
        with Worker(app, concurrency=2, poll_interval=0.1):  # a worker thread in this process
            run = app.start_run(onboarding, {"email": "ada@example.com"})
            # Returns once the run is completed, failed or cancelled (or raises RunWaitTimeout).
            return app.wait_for_run(run.id, timeout=30, include_history=True)


def main() -> Run:
    with tempfile.TemporaryDirectory() as directory:
        run = run_once(f"sqlite:///{Path(directory) / 'quickstart.db'}")
    print(run.status, run.context)
    for step_run in run.step_runs or ():
        print(
            f"  {step_run.step:<20} {step_run.status:<10} attempts {len(step_run.attempts or ())}"
        )
    return run


def test_onboarding_completes() -> None:
    with WorkflowEnvironment([onboarding]) as env:  # temporary SQLite, in-process executor
        run = env.start_run(onboarding, {"email": "ada@example.com", "plan": "pro"})
        env.run_until_idle()  # delivers every job, jumping the fake clock over retry delays
        done = env.client.inspect_run(run.id)
        assert done.status == "completed"
        assert done.context["account_id"] == "acct_ada"


if __name__ == "__main__":
    main()
