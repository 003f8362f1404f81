"""Worker processes for tests: started with an app's ``make_client``, killed at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).parents[3]

Spawn = Callable[..., subprocess.Popen[bytes]]


@contextmanager
def worker_processes(
    app: str, *, lease: float, concurrency: int, stderr: int | None = subprocess.PIPE
) -> Iterator[Spawn]:
    """Yield ``spawn(url, lease=, concurrency=)``: one ``run_worker`` process of ``app``.

    ``app`` is the module whose ``make_client(url)`` the worker uses. Processes still running
    at the end are killed (SIGKILL): a test stops the ones it means to stop itself.
    """
    started: list[subprocess.Popen[bytes]] = []

    def spawn(
        url: str, *, lease: float = lease, concurrency: int = concurrency
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.worker.run_worker",
                url,
                str(lease),
                str(concurrency),
                app,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        started.append(process)
        return process

    try:
        yield spawn
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            if process.stderr is not None:
                process.stderr.close()


def wait_until_stoppable(process: subprocess.Popen[bytes], *, timeout: float = 60.0) -> None:
    """Wait until ``process`` handles SIGTERM (its worker installed its handlers), on Linux.

    A worker process still importing when SIGTERM comes dies of it (exit status -15) instead
    of stopping: a test whose runs finished before every worker was up would see that.
    Reads the signals the process catches (``SigCgt`` in ``/proc/<pid>/status``).
    """
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except FileNotFoundError:
            return  # gone: its exit status tells the test
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.02)
