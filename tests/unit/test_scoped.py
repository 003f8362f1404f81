"""``Scoped``: a context variable set for one ``with`` block, and reset after it."""

from __future__ import annotations

import contextvars

import pytest

from squidmesh_sdk.scoped import Scoped

VARIABLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_scoped", default=None)


def test_the_value_holds_inside_the_block_only_and_as_gives_it() -> None:
    with Scoped(VARIABLE, "outer") as value:
        assert value == "outer"
        assert VARIABLE.get() == "outer"
        with Scoped(VARIABLE, "inner"):
            assert VARIABLE.get() == "inner"
        assert VARIABLE.get() == "outer"
    assert VARIABLE.get() is None


def test_an_exception_leaving_the_block_still_resets_the_variable() -> None:
    with pytest.raises(RuntimeError, match="boom"), Scoped(VARIABLE, "set"):
        raise RuntimeError("boom")
    assert VARIABLE.get() is None


def test_another_context_does_not_see_the_value() -> None:
    seen: list[str | None] = []
    with Scoped(VARIABLE, "here"):
        contextvars.Context().run(lambda: seen.append(VARIABLE.get()))
    assert seen == [None]
