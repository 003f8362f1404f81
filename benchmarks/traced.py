"""Row 7: the cost of tracing. One measurement per child process, tracing off or on.

The OpenTelemetry SDK can be installed once per process, so each measurement runs in a fresh
interpreter: ``python -m benchmarks.traced URL RUNS THREADS on|off`` prints the seconds that one
worker of THREADS threads took on RUNS queued 5-step runs. With ``on`` the SDK records every
span and exports it, in batches, to an exporter that discards them: the cost measured is the
library's instrumentation plus the SDK, not a network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

from benchmarks.results import Result
from benchmarks.squidmesh import CompletionObserver, drain, start_runs
from benchmarks.targets import Target
from benchmarks.workflows import LINEAR, LINEAR_STEPS, make_client

__all__ = ["install_discarding_sdk", "main", "tracing_cost"]


def install_discarding_sdk() -> None:
    """Install the OpenTelemetry SDK: every span recorded, exported in batches, discarded."""
    from opentelemetry import trace  # imported only by the processes that install it
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    trace.set_tracer_provider(provider)


def _measure(url: str, runs: int, threads: int) -> float:
    observer = CompletionObserver()
    with make_client(url, [observer]) as client:
        client.migrate()
        start_runs(client, LINEAR, runs)
        observer.expect(runs)
        return drain(client, observer, threads)


def tracing_cost(target: Target, runs: int, threads: int, *, traced: bool) -> Result:
    """Row 7: linear runs with one worker of ``threads`` threads, in a child process."""
    mode = "on" if traced else "off"
    command = [sys.executable, "-m", "benchmarks.traced", target.fresh(), str(runs), str(threads)]
    output = subprocess.run(  # noqa: S603 - our own module, with our own arguments
        [*command, mode], capture_output=True, text=True, check=True, timeout=1800
    ).stdout
    seconds = float(json.loads(output.strip().splitlines()[-1])["seconds"])
    return Result(
        row=7,
        name=f"tracing {mode} (SDK, discarding exporter)" if traced else f"tracing {mode}",
        workers=f"1 worker x {threads} threads",
        concurrency=threads,
        runs=runs,
        steps=runs * LINEAR_STEPS,
        seconds=seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The child process: measure once and print ``{"seconds": ...}``."""
    url, runs, threads, mode = argv if argv is not None else sys.argv[1:]
    if mode == "on":
        install_discarding_sdk()
    print(json.dumps({"seconds": _measure(url, int(runs), int(threads))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
