"""``python -m samples.observability`` prints every span to the console, then the run's tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
DECLINED = "error samples.saga_checkout.PaymentDeclinedError"

TREE = [
    "run saga_checkout  (INTERNAL)",
    f"  run saga_checkout failed  (INTERNAL, {DECLINED})",
    "  send reserve_inventory  (PRODUCER)",
    "  process reserve_inventory  (CONSUMER, attempt 1)",
    "    * run transition pending -> running",
    "    send authorize_payment  (PRODUCER)",
    "  process authorize_payment  (CONSUMER, attempt 1)",
    "    send capture_payment  (PRODUCER)",
    f"  process capture_payment  (CONSUMER, attempt 1, {DECLINED})",
    "    * run transition running -> retrying",
    "    send capture_payment  (PRODUCER)",
    f"  process capture_payment  (CONSUMER, attempt 2, {DECLINED})",
    "    * run transition retrying -> running",
    "    * run transition running -> failed",
    "    send compensation saga_checkout  (PRODUCER)",
    "  compensate saga_checkout  (CONSUMER)",
    "    compensate authorize_payment  (INTERNAL)",
    "    compensate reserve_inventory  (INTERNAL)",
]


def test_the_sample_prints_spans_on_the_console_and_the_runs_tree() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "samples.observability"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    exported = [line for line in lines if line.startswith("exported span ")]
    names = sorted(line.split("'")[1] for line in exported)
    assert names == sorted(line.strip().split("  (")[0] for line in TREE if "(" in line)
    assert len({line.rsplit(" trace ", 1)[1] for line in exported}) == 1, "one trace"
    summary = next(line for line in lines if line.startswith("run ") and " of " in line)
    assert summary.endswith("of saga_checkout: failed")
    start = lines.index("trace of the run (console):")
    assert lines[start + 1 :] == TREE
