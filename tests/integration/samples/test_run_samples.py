"""Every sample runs end to end, as README command (1) runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from samples import SAMPLES
from samples.__main__ import run_sample

EXPECTED = {
    "payment_recovery": ("completed", {"gateway_check", "notification", "invoice"}),
    "dependency_recovery": ("completed", {"account", "invoice", "notification"}),
    "manual_approval": ("completed", {"approval"}),
    "daily_digest": ("completed", {"delivery"}),
    "local_ledger_checkout": ("completed", {"local_ledger"}),
    "saga_checkout": ("failed", {"reservation", "authorization"}),
    "retry_verification": ("completed", {"retry"}),
    "cancellable_wait": ("cancelled", set()),
    "order_pipeline": (
        "completed",
        {"price_line", "total_cents", "reserved", "charge_id", "review", "shipment"},
    ),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_runs_to_its_expected_end(name: str, database_url: str) -> None:
    lines: list[str] = []
    run = run_sample(name, database=database_url, say=lines.append)
    status, context_keys = EXPECTED[name]
    assert run.status == status
    assert set(run.context) == context_keys
    assert f"final state: {status}" in lines
    assert any(line.startswith("step history:") for line in lines)
    # A step runs as a second iteration only when a loop brings the run back to it.
    assert not any("@" in (sr.step or "") for sr in run.step_runs or ())


def test_the_saga_sample_compensates_and_the_approval_sample_leaves_an_audit_trail(
    database_url: str,
) -> None:
    saga = run_sample("saga_checkout", database=database_url, say=lambda _line: None)
    statuses = {
        sr.step: (sr.recovery or {}).get("compensation", {}).get("status")
        for sr in saga.step_runs or ()
    }
    assert statuses == {
        "reserve_inventory": "completed",
        "authorize_payment": "completed",
        "capture_payment": None,
    }
    approval = run_sample("manual_approval", database=database_url, say=lambda _line: None)
    assert [(e.type, e.actor) for e in approval.events or ()] == [
        ("paused", None),
        ("approved", "sample-operator"),
        ("skipped", None),
    ]
