"""Functions generated from source text once, for the hot path (:func:`define`).

Where a loop over a class's fields or a statement's values would run at every step, the
straight-line function it amounts to is written once and compiled: record copies
(:mod:`~squidmesh_sdk.frozen`) and a statement's value conversions
(:mod:`~squidmesh_sdk.store.compiled`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["define"]


def define(name: str, source: str, namespace: dict[str, Any]) -> Any:
    """The function ``name`` that ``source`` defines, with ``namespace`` as its globals.

    Callers put names and keys in ``source`` through ``repr()`` only, and values in
    ``namespace``: nothing from a caller's data is ever compiled. Tracebacks name the function
    ``<squidmesh generated NAME>``.
    """
    exec(compile(source, f"<squidmesh generated {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]
