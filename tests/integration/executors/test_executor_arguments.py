"""The engine executors name a bad setting, and leave the engine's app as it was."""

from __future__ import annotations

from typing import Any

import procrastinate
import pytest
from celery import Celery
from procrastinate.testing import InMemoryConnector

from squidmesh_sdk import InvalidArgument
from squidmesh_sdk.executors.celery import TASK_NAME as CELERY_TASK
from squidmesh_sdk.executors.celery import CeleryExecutor
from squidmesh_sdk.executors.procrastinate import TASK_NAME as PROCRASTINATE_TASK
from squidmesh_sdk.executors.procrastinate import ProcrastinateExecutor

SHARED = [
    ({"queue": ""}, "queue"),
    ({"queue": 5}, "queue"),
    ({"queue": ["a"]}, "queue"),
    ({"queue_for": "emails"}, "queue_for"),
    ({"cron_catch_up": "bogus"}, "cron_catch_up"),
]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        *SHARED,
        ({"relay_interval": 0}, "relay_interval"),
        ({"relay_interval": "1"}, "relay_interval"),
        ({"relay_lease": float("nan")}, "relay_lease"),
        ({"redeliver_after": -1}, "redeliver_after"),
    ],
)
def test_a_celery_executor_refuses_a_bad_setting_and_leaves_the_app_alone(
    settings: dict[str, Any], named: str
) -> None:
    app = Celery("argument_tests", broker="memory://")
    with pytest.raises(InvalidArgument) as refused:
        CeleryExecutor(app, **settings)
    assert refused.value.argument == named
    # The app got no task: a corrected executor can still take it.
    assert CELERY_TASK not in app.tasks
    CeleryExecutor(app)
    assert CELERY_TASK in app.tasks


@pytest.mark.parametrize(("settings", "named"), [*SHARED, ({"stalled_after": 0}, "stalled_after")])
def test_a_procrastinate_executor_refuses_a_bad_setting_and_leaves_the_app_alone(
    settings: dict[str, Any], named: str
) -> None:
    app = procrastinate.App(connector=InMemoryConnector())
    with pytest.raises(InvalidArgument) as refused:
        ProcrastinateExecutor(app, **settings)
    assert refused.value.argument == named
    assert PROCRASTINATE_TASK not in app.tasks
    ProcrastinateExecutor(app)
    assert PROCRASTINATE_TASK in app.tasks


def test_the_engine_executors_need_their_engines_app() -> None:
    with pytest.raises(InvalidArgument, match="a Celery app"):
        CeleryExecutor(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="a Procrastinate app"):
        ProcrastinateExecutor(None)  # type: ignore[arg-type]
