"""The eight reference workflows compile, and their pictures are what we reviewed."""

from __future__ import annotations

from pathlib import Path

import pytest

from samples import SAMPLES
from samples.__main__ import load, main
from squidmesh_sdk import compile

MERMAID = Path(__file__).parent / "mermaid"


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_compiles_to_the_reviewed_mermaid(name: str) -> None:
    definition = compile(load(name))
    assert definition.name == name
    assert definition.to_mermaid() == (MERMAID / f"{name}.mmd").read_text()


def test_sample_shapes_match_the_reference() -> None:
    shapes = {name: compile(load(name)).shape for name in SAMPLES}
    assert shapes == {
        "payment_recovery": "transition",
        "dependency_recovery": "dependency",
        "manual_approval": "transition",
        "daily_digest": "transition",
        "local_ledger_checkout": "transition",
        "saga_checkout": "transition",
        "retry_verification": "transition",
        "cancellable_wait": "transition",
        "order_pipeline": "mixed",
    }
    digest = compile(load("daily_digest"))
    assert list(digest.triggers) == ["manual_digest", "daily_digest"]
    assert digest.trigger("daily_digest").kind == "cron"


def test_sample_cli_prints_the_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dependency_recovery", "--graph"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("workflow dependency_recovery (dependency), 3 steps\n")
    assert "    load_account --> prepare_notification\n" in out


def test_sample_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retry_verification", "--graph", "--json"]) == 0
    assert '"name": "retry_verification"' in capsys.readouterr().out
