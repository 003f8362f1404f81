"""Code shown in the docs is code CI runs: every Python block is a verbatim copy from samples/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from samples import hosting, quickstart

ROOT = Path(__file__).parents[2]
DOCS = (
    "docs/quickstart.md",
    "docs/hosting.md",
    "docs/operations.md",
    "docs/authoring.md",
    "docs/runtime.md",
    "docs/workers.md",
    "docs/cron.md",
    "docs/observability.md",
    "docs/cli.md",
    "docs/executors.md",
    "docs/inspector.md",
)
SAMPLE_SOURCES = {path: path.read_text() for path in sorted((ROOT / "samples").rglob("*.py"))}


def python_blocks(doc: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("doc", DOCS)
def test_every_python_block_is_copied_from_a_sample(doc: str) -> None:
    blocks = python_blocks(doc)
    assert blocks, f"{doc} shows no Python"
    for block in blocks:
        sources = [path.name for path, text in SAMPLE_SOURCES.items() if block in text]
        assert sources, f"{doc}: this block is not a verbatim copy from samples/:\n{block}"


def test_quickstart_runs_to_completion(capsys: pytest.CaptureFixture[str]) -> None:
    run = quickstart.main()
    assert run.status == "completed"
    assert run.context["welcome_email"] == "sent to ada@example.com for acct_ada"
    assert [step_run.status for step_run in run.step_runs or ()] == ["completed", "completed"]
    assert capsys.readouterr().out.startswith("completed {")


def test_quickstart_test_passes() -> None:
    quickstart.test_onboarding_completes()


def test_hosting_runs_an_order_through_the_wsgi_app(capsys: pytest.CaptureFixture[str]) -> None:
    body = hosting.main()
    assert body["status"] == "completed"
    assert body["context"] == {"order_status": "accepted", "warehouse_ticket": "wh_o-1"}
    out = capsys.readouterr().out
    assert out.startswith("422 Unprocessable Entity")
    assert "orders: [('o-1', 1200, 'accepted')]" in out
