"""docs/executors.md: a host whose steps run on Procrastinate workers.

procrastinate --app samples.guide.executors_procrastinate.procrastinate_app schema --apply
procrastinate --app samples.guide.executors_procrastinate.procrastinate_app worker
"""

import os

import procrastinate

from samples.quickstart import onboarding
from squidmesh_sdk import Client
from squidmesh_sdk.executors.procrastinate import ProcrastinateExecutor

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://app@localhost/shop")

# The same PostgreSQL database: jobs are inserted in the transaction that implies them.
procrastinate_app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=DATABASE_URL.replace("+psycopg", ""))
)
executor = ProcrastinateExecutor(procrastinate_app)  # registers "squidmesh.perform" on it
client = Client(DATABASE_URL, [onboarding], executor=executor)
