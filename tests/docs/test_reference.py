"""docs/reference.md documents every public name and is what scripts/api-reference writes."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

import squidmesh_sdk

ROOT = Path(__file__).parents[2]
REFERENCE = ROOT / "docs" / "reference.md"


def load_script() -> ModuleType:
    path = str(ROOT / "scripts" / "api-reference")
    loader = importlib.machinery.SourceFileLoader("api_reference", path)
    spec = importlib.util.spec_from_loader("api_reference", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_every_public_name_is_documented() -> None:
    text = REFERENCE.read_text()
    for name in squidmesh_sdk.__all__:
        assert f"\n## `{name}`\n" in text, f"{name} is missing from docs/reference.md"
    assert "(undocumented)" not in text


def test_reference_is_up_to_date() -> None:
    assert load_script().render() == REFERENCE.read_text(), "run scripts/api-reference"
