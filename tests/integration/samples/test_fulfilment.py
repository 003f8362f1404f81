"""The signals / child workflows / retry sample runs end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from samples import fulfilment


def test_the_fulfilment_sample_pays_ships_and_recovers(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = fulfilment.main(database_url)
    assert run.status == "completed"
    assert run.context["confirmation"] == "pay-77 / trk-o-1"
    assert capsys.readouterr().out.splitlines() == [
        "waiting_for_signal",
        "failed",
        "completed pay-77 / trk-o-1",
    ]
    assert [(s.idempotency_key, s.status) for s in run.signals or ()] == [("evt-1", "consumed")]
    assert [child.status for child in run.children or ()] == ["failed", "completed"]
    ship_runs = [sr.step for sr in run.step_runs or () if sr.step.startswith("ship")]
    assert ship_runs == ["ship", "ship@2"]
