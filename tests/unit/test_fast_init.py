"""``fast_init``: a frozen dataclass's ``__init__`` that sets its fields on an unfrozen twin.

Each class below is declared twice, once plainly and once under ``fast_init``: every way of
building one must give the same object, refuse the same calls, and leave it just as frozen.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from squidmesh_sdk import frozen
from squidmesh_sdk.frozen import evolve, fast_init
from squidmesh_sdk.generated import define
from squidmesh_sdk.graph.nodes import StepKey
from squidmesh_sdk.store.records import Attempt, Run


def _mixed(decorate: Callable[[type], type]) -> Any:
    # Positional and keyword-only fields, defaults, default factories, and fields named like
    # the builtins and locals a generated function might use.
    @decorate
    @dataclasses.dataclass(frozen=True, slots=True)
    class Mixed:
        type: str
        self: int
        cls: int = 3
        tags: list[str] = dataclasses.field(default_factory=lambda: ["new"])
        _: dataclasses.KW_ONLY
        put: str
        twin: dict[str, int] = dataclasses.field(default_factory=dict)
        note: str | None = None

    return Mixed


def _unchanged(cls: type) -> type:
    return cls


PLAIN = _mixed(_unchanged)
FAST = _mixed(fast_init)

CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("a", 1), {"put": "p"}),
    (("a", 1, 7, ["x"]), {"put": "p", "twin": {"k": 1}, "note": "n"}),
    ((), {"type": "b", "self": 2, "put": "q", "note": None}),
    (("c",), {"self": 5, "cls": 0, "put": "r"}),
]


def _state(value: Any) -> list[tuple[str, Any]]:
    return [(field.name, getattr(value, field.name)) for field in dataclasses.fields(value)]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_every_call_builds_what_the_dataclass_builds(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    plain = PLAIN(*args, **kwargs)
    fast = FAST(*args, **kwargs)

    assert type(fast) is FAST
    assert _state(fast) == _state(plain)
    assert repr(fast).replace("FAST", "PLAIN") == repr(plain).replace("FAST", "PLAIN")
    assert fast == FAST(*args, **kwargs)


def test_each_default_factory_is_called_for_each_object() -> None:
    first, second = FAST("a", 1, put="p"), FAST("a", 1, put="p")
    assert first.tags == ["new"]
    assert first.tags is not second.tags
    assert first.twin == {}
    assert first.twin is not second.twin


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("a",), {"put": "p"}),  # a positional field missing
        (("a", 1), {}),  # a keyword-only field missing
        (("a", 1, 3, [], "extra"), {"put": "p"}),  # a keyword-only field given by position
        (("a", 1), {"put": "p", "bogus": 1}),
        (("a", 1), {"put": "p", "type": "twice"}),
    ],
)
def test_a_wrong_call_is_refused_as_the_dataclass_refuses_it(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError) as plain:
        PLAIN(*args, **kwargs)
    with pytest.raises(TypeError) as fast:
        FAST(*args, **kwargs)
    assert str(fast.value) == str(plain.value)


def test_the_object_is_as_frozen_and_as_slotted_as_the_dataclass_s() -> None:
    fast = FAST("a", 1, put="p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.note = "changed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        del fast.note
    assert not hasattr(fast, "__dict__")


def test_the_signature_doc_and_name_are_the_dataclass_s() -> None:
    assert inspect.signature(FAST) == inspect.signature(PLAIN)
    assert FAST.__init__.__qualname__.endswith("Mixed.__init__")
    assert FAST.__init__.__doc__ == PLAIN.__init__.__doc__
    dataclass_init = inspect.signature(vars(Run)["__init__"].__wrapped__)
    assert (
        list(inspect.signature(Run).parameters.values())
        == list(dataclass_init.parameters.values())[1:]
    )


def test_copies_and_replace_give_equal_objects_of_the_same_class() -> None:
    fast = FAST("a", 1, put="p", twin={"k": 1})
    for other in (
        copy.copy(fast),
        copy.deepcopy(fast),
        dataclasses.replace(fast),
        evolve(fast),
    ):
        assert type(other) is FAST
        assert other == fast
    assert dataclasses.replace(fast, note="n").note == "n"
    assert evolve(fast, note="n") == dataclasses.replace(fast, note="n")


@fast_init
@dataclasses.dataclass(frozen=True, slots=True)
class _Pickled:
    value: int
    label: str = "x"


def test_a_pickled_object_comes_back_equal_and_hashes_alike() -> None:
    value = _Pickled(5)
    back = pickle.loads(pickle.dumps(value))  # noqa: S301 - our own bytes
    assert type(back) is _Pickled
    assert back == value
    assert hash(back) == hash(value) == hash(_Pickled(5, "x"))


def test_an_instance_of_a_subclass_is_built_the_dataclass_s_way() -> None:
    class Sub(FAST):  # type: ignore[misc, valid-type]
        def total(self) -> int:
            return int(self.self) + int(self.cls)

    sub = Sub("a", 1, put="p")
    assert type(sub) is Sub
    assert sub.total() == 4
    assert _state(sub) == _state(PLAIN("a", 1, put="p"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        sub.note = "changed"
    # A copy of the subclass's instance stays one (``evolve`` copies it through
    # ``dataclasses.replace``: the subclass has no ``__init__`` of its own).
    assert type(evolve(sub, note="n")) is Sub


def test_the_hot_records_are_built_this_way_and_still_equal_their_copies() -> None:
    for cls in (Run, Attempt, StepKey):
        assert cls.__init__.__code__.co_filename == "<squidmesh generated __init__>"
    key = StepKey("charge", 2, item=3)
    assert key == StepKey(name="charge", iteration=2, item=3)
    assert key.key == "charge@2[3]"
    assert StepKey("charge") == StepKey("charge", 1, None)
    assert evolve(key, name="ship") == dataclasses.replace(key, name="ship")


@dataclasses.dataclass(frozen=True)
class _NoSlots:
    value: int


@dataclasses.dataclass(slots=True)
class _NotFrozen:
    value: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Base:
    value: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Derived(_Base):
    more: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


@dataclasses.dataclass(frozen=True, slots=True)
class _Computed:
    value: int
    double: int = dataclasses.field(init=False, default=0)


@dataclasses.dataclass(frozen=True, slots=True)
class _Reserved:
    _sm_cls: int


@dataclasses.dataclass(frozen=True, slots=True)
class _WithInitVar:
    value: int
    scale: dataclasses.InitVar[int] = 1


@dataclasses.dataclass(frozen=True, slots=True)
class _OwnInit:
    value: int

    def __init__(self, value: int) -> None:  # kept by @dataclass: it checks and scales
        if value < 0:
            raise ValueError("negative")
        object.__setattr__(self, "value", value * 10)


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class _NoInit:
    value: int


@dataclasses.dataclass(frozen=True, slots=True, weakref_slot=True)
class _WeaklyReferenced:
    value: int


@pytest.mark.parametrize(
    "cls",
    [
        _NoSlots,
        _NotFrozen,
        _Derived,
        _Checked,
        _Computed,
        _Reserved,
        _WithInitVar,
        _OwnInit,
        _NoInit,
        _WeaklyReferenced,
        int,
    ],
    ids=lambda cls: cls.__name__,
)
def test_a_class_it_cannot_build_the_same_way_is_refused_by_name(cls: type) -> None:
    init = vars(cls).get("__init__")
    with pytest.raises(TypeError, match=f"does not apply to {cls.__qualname__}"):
        fast_init(cls)
    assert vars(cls).get("__init__") is init  # left as it was


class _Finalized:
    deleted: list[object] = []  # noqa: RUF012 - shared on purpose: what __del__ saw


@dataclasses.dataclass(frozen=True, slots=True)
class _WithDel:
    value: int

    def __del__(self) -> None:
        _Finalized.deleted.append(getattr(self, "value", "unset"))


def test_finding_the_twin_runs_no_finalizer_on_an_empty_object() -> None:
    _Finalized.deleted.clear()
    decorated = fast_init(_WithDel)
    assert _Finalized.deleted == []
    decorated(3)
    assert _Finalized.deleted == [3]


def test_a_copy_of_a_record_with_a_twin_is_set_on_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # evolve's copier of a frozen, slotted record writes the twin's slots (no per-field
    # object.__setattr__), and a record without a twin is copied field by field as before.
    generated: list[str] = []

    def recording(name: str, source: str, namespace: dict[str, Any]) -> Any:
        generated.append(source)
        return define(name, source, namespace)

    monkeypatch.setattr(frozen, "_copiers", {})
    monkeypatch.setattr(frozen, "define", recording)
    assert evolve(_Base(1), value=2) == _Base(2)
    assert evolve(_NoSlots(1), value=2) == _NoSlots(2)
    twin_copy, field_copy = generated
    assert "new.__class__ = cls" in twin_copy
    assert "put(" not in twin_copy
    assert "put(new, 'value'" in field_copy


def _simple(decorate: Callable[[type], type]) -> Any:
    @decorate
    @dataclasses.dataclass(frozen=True, slots=True)
    class Simple:
        value: int

    return Simple


def test_the_object_s_own_parameter_is_named_as_in_the_dataclass_s_errors() -> None:
    with pytest.raises(TypeError) as plain:
        _simple(_unchanged)(1, self=2)
    with pytest.raises(TypeError) as fast:
        _simple(fast_init)(1, self=2)
    assert str(fast.value) == str(plain.value)
    assert "multiple values for argument 'self'" in str(fast.value)
