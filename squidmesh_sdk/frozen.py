"""Copies of frozen dataclasses with some fields changed, made fast (:func:`evolve`).

``dataclasses.replace`` walks the class's fields, checking each one's kind, and then calls
``__init__`` with every field as a keyword: on a record of two dozen fields that is about 500
bytecodes, and a chained step copied records four times, an eighth of the Python a step ran.
:func:`evolve` does the same copy with a function generated once per class and set of changed
fields, which sets each field straight from the original or from the changes (as ``__init__``
would, through ``object.__setattr__``), without asking for each field whether it changed.

Setting a field of a frozen dataclass goes through ``object.__setattr__`` (its own
``__setattr__`` refuses every change): a call through a slot wrapper that packs and unpacks
an argument tuple, several times the cost of a plain attribute store. A step sets about 160
fields of frozen records. For a frozen dataclass with ``__slots__`` and no base of its own,
:func:`fast_init` and :func:`evolve` set them on an *unfrozen twin* instead, a class with the
same slots and nothing else, whose attribute stores are plain slot stores, and then give the
object its real class (``__class__`` assignment, which CPython allows between classes of the
same layout). The object is its twin only inside the function that builds it, which hands
it out frozen (an exception raised meanwhile, a signal's say, may leave it in that frame).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from squidmesh_sdk.generated import define

__all__ = ["evolve", "fast_init"]

T = TypeVar("T")
C = TypeVar("C", bound=type)

_Copier = Callable[[Any, dict[str, Any]], Any]

_copiers: dict[tuple[Any, ...], _Copier] = {}
_lock = threading.Lock()

MOST_COPIERS = 1024
"""Copiers kept: one per record class and set of changed fields (in the order given), which
the code that copies records bounds; past this, copies go through ``dataclasses.replace``."""


def evolve(record: T, /, **changes: Any) -> T:
    """A copy of ``record`` (a frozen dataclass instance) with ``changes``.

    The same result as ``dataclasses.replace(record, **changes)`` for dataclasses whose
    ``__init__`` is the one ``@dataclass`` generated, setting every field, with no
    ``__post_init__``; any other class goes through ``dataclasses.replace``.

    Raises:
        TypeError: a name in ``changes`` is not a field of the record.
    """
    key = (type(record), *changes)
    copier = _copiers.get(key) or _copier_for(key)
    return copier(record, changes)  # type: ignore[no-any-return]


def _copier_for(key: tuple[Any, ...]) -> _Copier:
    cls, changed = key[0], key[1:]
    with _lock:
        copier = _copiers.get(key)
        if copier is None:
            if len(_copiers) >= MOST_COPIERS:
                return _replace
            copier = _copiers[key] = _generate(cls, changed)
        return copier


def _replace(record: Any, changes: dict[str, Any]) -> Any:
    return dataclasses.replace(record, **changes)


def _generate(cls: type, changed: tuple[str, ...]) -> _Copier:
    if not _built_from_fields(cls):
        return _replace
    fields = dataclasses.fields(cls)
    names = tuple(field.name for field in fields)
    unknown = sorted(set(changed) - set(names))
    if unknown:
        raise TypeError(f"{cls.__qualname__} has no field(s) {', '.join(unknown)}")
    for name in names:
        if not name.isidentifier():  # pragma: no cover - dataclass fields are identifiers
            raise TypeError(f"cannot copy {cls.__qualname__}: field {name!r}")
    twin = _twin_of(cls)
    values = {name: f"changes[{name!r}]" if name in changed else f"record.{name}" for name in names}
    if twin is None:
        lines = ["def copy(record, changes):", "    new = make(cls)"]
        lines += [f"    put(new, {name!r}, {value})" for name, value in values.items()]
    else:
        lines = ["def copy(record, changes):", "    new = make(twin)"]
        lines += [f"    new.{name} = {value}" for name, value in values.items()]
        lines.append("    new.__class__ = cls")
    lines.append("    return new")
    namespace: dict[str, Any] = {
        "cls": cls,
        "twin": twin,
        "make": object.__new__,
        "put": object.__setattr__,
    }
    copier: _Copier = define("copy", "\n".join(lines), namespace)
    return copier


def fast_init(cls: C) -> C:
    """Give a frozen dataclass an ``__init__`` that sets its fields on its twin (see the module).

    Applied over ``@dataclass(frozen=True, slots=True, ...)``. The new ``__init__`` takes the
    same parameters, with the same defaults and default factories, and makes the same object;
    ``inspect.signature`` still shows the dataclass's. An instance of a subclass is built the
    way the dataclass builds it (its layout is the subclass's).

    Raises:
        TypeError: ``cls`` is not such a dataclass: not frozen, without ``__slots__`` (or with
            a ``__weakref__`` slot), with a base class of its own, an ``__init__`` that
            ``@dataclass`` did not write, a ``__post_init__``, an ``InitVar``, or a field left
            out of ``__init__``; or a field's name starts with ``_sm_``.
    """
    twin = _twin_of(cls)
    original: Any = vars(cls).get("__init__")
    code = getattr(original, "__code__", None)
    if (
        twin is None
        or code is None
        or code.co_filename != _DATACLASS_SOURCE  # not already fast_init's, say
        or not _built_from_fields(cls)
    ):
        raise TypeError(f"fast_init does not apply to {cls.__qualname__}")
    fields = dataclasses.fields(cls)
    if any(field.name.startswith("_sm_") for field in fields):
        raise TypeError(f"fast_init does not apply to {cls.__qualname__}: a field named _sm_*")
    # The first parameter is called ``self``, as in the dataclass's (its errors name it),
    # unless a field is; every other name the function uses starts with "_sm_", so that no
    # field (``type``, ``cls``...) hides it.
    me = "_sm_self" if any(field.name == "self" for field in fields) else "self"
    namespace: dict[str, Any] = {
        "_sm_cls": cls,
        "_sm_twin": twin,
        "_sm_put": object.__setattr__,
        "_sm_type": type,
        "_sm_factory": _FACTORY,
    }
    positional: list[str] = []
    keyword: list[str] = []
    defaults: list[str] = []
    for index, field in enumerate(fields):
        parameter = field.name
        if field.default is not dataclasses.MISSING:
            namespace[f"_sm_d{index}"] = field.default
            parameter += f"=_sm_d{index}"
        elif field.default_factory is not dataclasses.MISSING:
            namespace[f"_sm_f{index}"] = field.default_factory
            parameter += "=_sm_factory"
            defaults.append(f"    if {field.name} is _sm_factory:")
            defaults.append(f"        {field.name} = _sm_f{index}()")
        (keyword if field.kw_only else positional).append(parameter)
    signature = ", ".join([me, *positional, *(["*", *keyword] if keyword else [])])
    lines = [f"def __init__({signature}):", *defaults, f"    if _sm_type({me}) is _sm_cls:"]
    lines.append(f"        _sm_put({me}, '__class__', _sm_twin)")
    lines += [f"        {me}.{field.name} = {field.name}" for field in fields]
    lines.append(f"        {me}.__class__ = _sm_cls")
    lines.append("    else:  # a subclass: the layout is its own")
    lines += [f"        _sm_put({me}, {field.name!r}, {field.name})" for field in fields]
    init = define("__init__", "\n".join(lines), namespace)
    functools.update_wrapper(init, original)  # its name, doc and signature (``__wrapped__``)
    cls.__init__ = init  # type: ignore[misc]
    return cls


_DATACLASS_SOURCE = "<string>"
"""The file name of the functions ``@dataclass`` writes (it compiles them from text)."""
_FAST_INIT_SOURCE = "<squidmesh generated __init__>"
"""The file name of the ``__init__`` :func:`fast_init` writes (:func:`define` names it)."""


def _built_from_fields(cls: type) -> bool:
    """Whether ``cls``'s ``__init__`` does nothing but set each field from its parameter.

    So it is for a dataclass whose ``__init__`` ``@dataclass`` (or :func:`fast_init`) wrote,
    without a ``__post_init__``, a field left out, or an ``InitVar`` (a parameter that is no
    field). A copy may then set the fields itself; a class of its own ``__init__`` (which
    ``@dataclass`` keeps) may check or derive values there.
    """
    init = vars(cls).get("__init__")
    code = getattr(init, "__code__", None)
    if not (
        dataclasses.is_dataclass(cls)
        and cls.__dataclass_params__.init  # type: ignore[attr-defined]
        and code is not None
        and code.co_filename in (_DATACLASS_SOURCE, _FAST_INIT_SOURCE)
        and not hasattr(cls, "__post_init__")
    ):
        return False
    fields = dataclasses.fields(cls)
    # ``inspect.signature`` follows fast_init's ``__wrapped__`` to the dataclass's.
    parameters = list(inspect.signature(init).parameters)[1:]  # type: ignore[arg-type]
    return all(field.init for field in fields) and parameters == [f.name for f in fields]


_FACTORY: Any = object()
"""The default of a parameter whose field has a default factory, as in ``@dataclass``."""

_twins: dict[type, type | None] = {}


def _twin_of(cls: type) -> type | None:
    """``cls``'s unfrozen twin, or ``None`` when it cannot have one (see the module)."""
    try:
        return _twins[cls]
    except KeyError:
        pass
    twin: type | None = None
    slots = vars(cls).get("__slots__")
    if (
        dataclasses.is_dataclass(cls)
        and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        and isinstance(slots, tuple)
        and cls.__bases__ == (object,)
    ):
        candidate = type(
            cls.__name__,
            (object,),
            {
                "__slots__": slots,
                "__module__": cls.__module__,
                "__qualname__": f"{cls.__qualname__} (unfrozen, being built)",
            },
        )
        probe: Any = object.__new__(candidate)
        try:
            probe.__class__ = cls
        except TypeError:  # the layouts differ (a ``__weakref__`` slot does, in 3.11)
            twin = None
        else:
            twin = candidate
            # Dropped as the twin: an empty object of the real class could run its __del__.
            object.__setattr__(probe, "__class__", candidate)
    # Not under ``_lock``: a copier is generated under it. Two threads may each make a twin;
    # the first one kept is everyone's (``setdefault`` is atomic).
    return _twins.setdefault(cls, twin)
