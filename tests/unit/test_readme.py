"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"


def test_readme_example_compiles_and_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the example creates squidmesh.db in the working directory
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD\n")
    assert "reserve_inventory -->|ok| capture_payment" in out
    assert 'capture_payment["capture_payment<br/>retry: 3 attempts<br/>irreversible"]' in out
    assert out.endswith("completed {'captured': 1200}\n")
    assert (tmp_path / "squidmesh.db").exists()
