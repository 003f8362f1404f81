"""The inspector's dependencies load only when the inspector is used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import squidmesh_sdk.ui

STATIC = Path(squidmesh_sdk.ui.__file__).parent / "static"


def test_neither_the_package_nor_the_cli_imports_the_web_stack() -> None:
    code = (
        "import sys, squidmesh_sdk, squidmesh_sdk.cli\n"
        "from squidmesh_sdk.cli.parser import build_parser\n"
        "build_parser()\n"
        "web = [m for m in sys.modules if m.split('.')[0] in "
        "{'starlette', 'jinja2', 'uvicorn', 'markupsafe', 'fastapi', 'squidmesh_sdk.ui'}"
        " or m.startswith('squidmesh_sdk.ui')]\n"
        "print(','.join(sorted(web)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_without_the_ui_extra_the_import_says_what_to_install() -> None:
    code = "import sys\nsys.modules['starlette'] = None\nimport squidmesh_sdk.ui\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "pip install 'squidmesh-sdk[ui]'" in result.stderr


def test_the_assets_ship_in_the_package_and_load_nothing_from_elsewhere() -> None:
    assert sorted(path.name for path in STATIC.iterdir()) == ["inspector.css", "inspector.js"]
    templates = Path(squidmesh_sdk.ui.__file__).parent / "templates"
    for path in [*STATIC.iterdir(), *templates.iterdir()]:
        text = path.read_text()
        assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), path
        assert "https://" not in text, path
        assert "//cdn" not in text, path
