"""``Client`` names a wrong collaborator, and a client refused leaves nothing open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from squidmesh_sdk import (
    COMPLETE,
    Client,
    Database,
    InlineExecutor,
    InvalidArgument,
    Workflow,
    manual,
)

flow = Workflow("flow", triggers=[manual("go")])
flow.chain(flow.log("note", message="hi"), COMPLETE)


@pytest.mark.parametrize(
    ("settings", "named", "says"),
    [
        ({"executor": "inline"}, "executor", "must be an Executor"),  # was AttributeError
        ({"observers": 1}, "observers", "a list of observers"),  # was TypeError
        ({"observers": [1]}, "observers", r"emit\(event\)"),  # failed at the first event
        ({"clock": "x"}, "clock", r"now\(\)"),  # failed at the first start
    ],
)
def test_a_wrong_collaborator_is_refused_by_name(
    tmp_path: Path, settings: dict[str, Any], named: str, says: str
) -> None:
    with pytest.raises(InvalidArgument, match=says) as refused:
        Client(f"sqlite:///{tmp_path}/app.db", [flow], **settings)
    assert refused.value.argument == named


class _Unbindable(InlineExecutor):
    def bind(self, binding: Any) -> None:
        raise RuntimeError("this executor cannot be bound")


def test_a_client_whose_executor_cannot_be_bound_disposes_the_database_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disposed: list[Database] = []
    dispose = Database.dispose

    def noting(self: Database) -> None:
        disposed.append(self)
        dispose(self)

    monkeypatch.setattr(Database, "dispose", noting)
    with pytest.raises(RuntimeError, match="cannot be bound"):
        Client(f"sqlite:///{tmp_path}/app.db", [flow], executor=_Unbindable())
    assert len(disposed) == 1
    # A database the host gave is the host's: it stays open.
    database = Database(f"sqlite:///{tmp_path}/app.db")
    with pytest.raises(RuntimeError, match="cannot be bound"):
        Client(database, [flow], executor=_Unbindable())
    assert disposed[1:] == []
    database.dispose()


def test_observers_may_be_any_iterable(tmp_path: Path) -> None:
    seen: list[object] = []

    class Recorder:
        def emit(self, event: object) -> None:
            seen.append(event)

    with Client(
        f"sqlite:///{tmp_path}/app.db", [flow], observers=(o for o in [Recorder()])
    ) as client:
        client.migrate()
        client.start_run("flow")
    assert seen
