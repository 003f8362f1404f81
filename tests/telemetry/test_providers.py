"""The library records spans and metrics only once a provider is installed, and then does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_are_recorded_with_a_meter_provider_and_no_tracer_provider() -> None:
    # A process of its own: the session's tests install both providers, once per process.
    result = subprocess.run(
        [sys.executable, "-m", "tests.telemetry.metrics_only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["before"] == [False, False]  # nothing installed: nothing to record
    assert report["after"] == [True, False]  # metrics only
    assert report["status"] == "completed"
    assert report["counts"] == {"squidmesh.runs.started": 1, "squidmesh.runs.finished": 1}
