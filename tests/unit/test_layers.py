"""The import contracts of pyproject.toml hold, and fail on an import that breaks the layers.

``scripts/test`` runs ``lint-imports`` on the tree; these tests show the contracts can fail:
each copies the package, adds one forbidden import, and checks that lint-imports names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "squidmesh_sdk",
        tmp_path / "squidmesh_sdk",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n" + code + "\n")


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_copy_keeps_every_contract_before_it_is_changed(copy: Path) -> None:
    result = lint_imports(copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_under_type_checking_breaks_the_layers(copy: Path) -> None:
    append(
        copy / "squidmesh_sdk" / "port" / "executor.py",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from squidmesh_sdk.client import Client  # noqa: F401",
    )
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "squidmesh_sdk.port is not allowed to import squidmesh_sdk.client" in result.stdout
    assert "squidmesh_sdk.port.executor -> squidmesh_sdk.client" in result.stdout


def test_the_runtime_may_not_import_a_concrete_executor(copy: Path) -> None:
    append(
        copy / "squidmesh_sdk" / "runtime" / "execution.py",
        "def _late() -> None:\n    from squidmesh_sdk.executors import database  # noqa: F401",
    )
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "squidmesh_sdk.runtime is not allowed to import squidmesh_sdk.executors" in (
        result.stdout
    )


def test_a_cycle_inside_a_subpackage_breaks_the_acyclic_contract(copy: Path) -> None:
    # definition.workflow imports definition.steps; an import back (even inside a function)
    # closes a cycle that the layers contract alone cannot see.
    append(
        copy / "squidmesh_sdk" / "definition" / "steps.py",
        "def _late() -> None:\n    from squidmesh_sdk.definition import workflow  # noqa: F401",
    )
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "No import cycle between the modules of a subpackage BROKEN" in result.stdout
    assert "squidmesh_sdk.definition" in result.stdout


def test_an_editable_install_exposes_only_the_package(tmp_path: Path) -> None:
    # The checkout root is not on sys.path: tests, samples, tools and benchmarks of this
    # project must not be importable from elsewhere in the user's virtualenv.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    for name in ("tests", "samples", "tools", "benchmarks"):
        result = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1, name
        assert f"No module named '{name}'" in result.stderr
    found = subprocess.run(
        [sys.executable, "-c", "import squidmesh_sdk; print(squidmesh_sdk.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(found.stdout.strip()) == ROOT / "squidmesh_sdk" / "__init__.py"


def test_every_module_of_the_package_has_a_layer() -> None:
    # A module the layers contract does not name is not checked at all: name each one.
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = [
        contract["layers"]
        for contract in config["tool"]["importlinter"]["contracts"]
        if contract["id"] == "layers"
    ]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    package = ROOT / "squidmesh_sdk"
    present = {
        path.stem if path.is_file() else path.name
        for path in package.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    assert present - named == set()
    assert named - present == set()
