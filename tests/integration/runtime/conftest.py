"""Runtime tests run on SQLite and PostgreSQL through the public test harness."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from squidmesh_sdk import Workflow, WorkflowDefinition
from squidmesh_sdk.testing import WorkflowEnvironment

MakeEnv = Callable[..., WorkflowEnvironment]


@pytest.fixture
def make_env(database_url: str) -> Iterator[MakeEnv]:
    """Build a :class:`WorkflowEnvironment` on this test's database; closed after the test."""
    environments: list[WorkflowEnvironment] = []

    def make(*workflows: Workflow | WorkflowDefinition, **options: Any) -> WorkflowEnvironment:
        env = WorkflowEnvironment(workflows, database=database_url, **options)
        environments.append(env)
        return env

    yield make
    for env in environments:
        env.close()
