"""``evolve``: ``dataclasses.replace`` for the hot path, with the same results."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from squidmesh_sdk import frozen
from squidmesh_sdk.frozen import evolve
from squidmesh_sdk.store.records import Run

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _run() -> Run:
    return Run(
        id="0190e3a4-0000-7000-8000-000000000001",
        workflow="checkout",
        trigger="api",
        status="running",
        payload={"order": 1},
        context={"a": 1},
        current_step="charge",
        last_error=None,
        replayed_from_run_id=None,
        definition_fingerprint="f",
        definition_version="v1",
        trace_context=None,
        inserted_at=NOW,
        updated_at=NOW,
        priority=3,
    )


def test_a_copy_has_the_changes_and_every_other_field_of_the_original() -> None:
    run = _run()
    later = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    copy = evolve(run, status="completed", current_step=None, updated_at=later)
    assert copy == dataclasses.replace(run, status="completed", current_step=None, updated_at=later)
    assert (copy.status, copy.current_step, copy.updated_at) == ("completed", None, later)
    assert copy.priority == 3
    assert copy.payload is run.payload
    assert (run.status, run.current_step, run.updated_at) == ("running", "charge", NOW)


def test_a_copy_is_frozen_like_the_original() -> None:
    copy = evolve(_run(), status="paused")
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.status = "running"  # type: ignore[misc]


def test_a_copy_without_changes_is_equal_but_not_the_same_object() -> None:
    run = _run()
    copy = evolve(run)
    assert copy == run
    assert copy is not run


def test_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"Run has no field.*bogus"):
        evolve(_run(), bogus=1)


@dataclasses.dataclass(frozen=True)
class _Checked:
    value: int
    seen: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


@dataclasses.dataclass(frozen=True)
class _Derived:
    value: int
    double: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "double", self.value * 2)


@dataclasses.dataclass(frozen=True, init=False)
class _OwnInit:
    value: int

    def __init__(self, value: int) -> None:
        object.__setattr__(self, "value", value * 10)


def test_a_class_that_checks_or_derives_in_its_init_goes_through_it() -> None:
    with pytest.raises(ValueError, match="negative"):
        evolve(_Checked(1), value=-1)
    assert evolve(_Derived(2), value=5).double == 10
    assert evolve(_OwnInit(1), value=2).value == dataclasses.replace(_OwnInit(1), value=2).value


def test_copies_changing_other_fields_or_in_another_order_each_get_theirs() -> None:
    run = _run()
    later = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    # One copier per set of changed fields, in the order given: each sets its own fields.
    assert evolve(run, status="paused") == dataclasses.replace(run, status="paused")
    assert evolve(run, updated_at=later, status="completed") == dataclasses.replace(
        run, status="completed", updated_at=later
    )
    assert evolve(run, status="completed", updated_at=later).updated_at == later
    assert evolve(run, context={"b": 2}).context == {"b": 2}
    assert evolve(run, context={"b": 2}).status == "running"


def test_past_the_most_copiers_kept_copies_go_through_replace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    generated: list[str] = []
    monkeypatch.setattr(frozen, "MOST_COPIERS", 0)
    monkeypatch.setattr(frozen, "_copiers", {})
    monkeypatch.setattr(frozen, "define", lambda *args: generated.append(args[0]))
    run = _run()
    assert evolve(run, priority=9) == dataclasses.replace(run, priority=9)
    assert evolve(run, priority=8).priority == 8
    assert (frozen._copiers, generated) == ({}, [])  # nothing generated, nothing kept


@dataclasses.dataclass(frozen=True)
class _KeptInit:
    value: int

    def __init__(self, value: int) -> None:  # kept by @dataclass (init=True): it scales
        object.__setattr__(self, "value", value * 10)


@dataclasses.dataclass(frozen=True)
class _WithInitVar:
    value: int
    scale: dataclasses.InitVar[int]


def test_a_class_of_its_own_init_or_an_init_var_is_copied_as_replace_copies_it() -> None:
    # A copy that set the fields itself would skip the hand-written __init__ (10, not 20)
    # and drop the InitVar that replace() insists on.
    assert evolve(_KeptInit(1), value=2).value == dataclasses.replace(_KeptInit(1), value=2).value
    assert evolve(_KeptInit(1), value=2).value == 20
    with pytest.raises(ValueError, match="InitVar 'scale' must be specified"):
        dataclasses.replace(_WithInitVar(1, 3), value=2)
    with pytest.raises(ValueError, match="InitVar 'scale' must be specified"):
        evolve(_WithInitVar(1, 3), value=2)
