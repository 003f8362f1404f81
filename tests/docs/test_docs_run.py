"""The Python blocks of the docs run: whole docs as one module, single blocks on their own, and
the sample of every other (excerpted) block is imported here, so its top-level code runs."""

from __future__ import annotations

import builtins
import importlib
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from squidmesh_sdk import compile

ROOT = Path(__file__).parents[2]
DOCS = sorted(ROOT.glob("docs/*.md"))


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.DOTALL)


def execute(name: str, source: str) -> dict[str, Any]:
    """Run ``source`` as a module named ``name`` (pydantic resolves its models' annotations)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec(builtins.compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - the docs' own code
    finally:
        del sys.modules[name]
    return module.__dict__


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    page = execute("docs_quickstart", "\n\n".join(python_blocks(ROOT / "docs/quickstart.md")))
    run = page["run_once"](f"sqlite:///{tmp_path / 'quickstart.db'}")
    assert run.status == "completed"
    assert run.context["welcome_email"] == "sent to ada@example.com for acct_ada"
    page["test_onboarding_completes"]()


def test_the_triggers_block_runs_on_its_own() -> None:
    (block,) = [b for b in python_blocks(ROOT / "docs/authoring.md") if "ScheduledDigest" in b]
    digest = execute("docs_triggers", block)["digest"]
    assert list(compile(digest).triggers) == ["manual_digest", "daily_digest"]


def _excerpt_sources() -> Iterator[str]:
    sources = {path: path.read_text() for path in sorted((ROOT / "samples").rglob("*.py"))}
    seen: set[str] = set()
    for doc in DOCS:
        for block in python_blocks(doc):
            for path, text in sources.items():
                module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                if block in text and module not in seen:
                    seen.add(module)
                    yield module


@pytest.mark.parametrize("module", list(_excerpt_sources()))
def test_the_sample_every_block_comes_from_imports(module: str) -> None:
    """Importing runs its top-level code (declarations); tests/docs and tests/integration/samples
    run their functions."""
    assert importlib.import_module(module).__name__ == module
