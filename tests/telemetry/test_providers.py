"""The library records spans and metrics only once a provider is installed, and then does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.metrics import _internal as metrics_internal

from squidmesh_sdk import telemetry

ROOT = Path(__file__).resolve().parents[2]


def test_what_is_recorded_without_global_providers_and_with_a_meter_provider_only() -> None:
    # A process of its own: the session's tests install both providers, once per process.
    # Without the variables that would make OpenTelemetry load a provider by itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_PYTHON_")}
    result = subprocess.run(
        [sys.executable, "-m", "tests.telemetry.without_global_providers"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["before"] == [False, False]  # nothing installed: nothing to record
    # A span of a provider the host did not install globally still gets the run's events.
    assert report["host_span_events"] == ["run transition"]
    # A job queued where nothing records carries the current span's context as its send:
    # in a delivery, the run's own; in a host's recording span, that span's (and the block
    # runs under a non-recording span wearing it, as a send span of the no-op tracer would).
    sending = report["sending"]
    in_run = sending["in the run's context"]
    assert in_run["current"] is not None
    assert in_run["trace"] == {"send": in_run["current"], "run": in_run["current"]}
    assert not in_run["inside records"]
    in_host = sending["in a host span"]
    assert in_host["trace"] == {"send": in_host["current"], "run": in_run["current"]}
    assert in_host["current"] != in_run["current"]
    assert not in_host["inside is the outer span"]
    assert not in_host["inside records"]
    assert in_host["inside's context"] == in_host["current"]
    assert sending["outside any span"]["trace"] is None
    assert report["after"] == [True, False]  # metrics only
    assert report["status"] == "completed"
    assert report["counts"] == {"squidmesh.runs.started": 1, "squidmesh.runs.finished": 1}


def test_the_providers_are_looked_at_again_when_the_api_globals_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This session's providers are installed (tests/telemetry/conftest.py), and the answers
    # are remembered for them; a host's test suite may reset the API's globals.
    assert (telemetry.tracing(), telemetry.metering()) == (True, True)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", None)
    assert (telemetry.tracing(), telemetry.metering(), telemetry.recording()) == (
        False,
        False,
        False,
    )
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", trace.NoOpTracerProvider())
    assert not telemetry.tracing()
    monkeypatch.undo()
    assert (telemetry.tracing(), telemetry.metering()) == (True, True)
