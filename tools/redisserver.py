"""A private, throwaway Redis server for the Celery executor's tests.

``scripts/test`` installs ``redis-server`` (Debian's ``redis-server`` package) when it is
missing. Each server gets a temporary directory and a free loopback port. It runs with an
append-only file fsynced on every write, the configuration a Redis that is a Celery *broker*
needs: a broker restart must not lose the messages it accepted. Tests stop and restart it to
check that runs survive a broker outage.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "binary"]


def binary() -> str | None:
    """The path of ``redis-server``, if installed."""
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` on a free port of 127.0.0.1, with its files in a temporary directory."""

    def __init__(self) -> None:
        found = binary()
        if found is None:
            raise RuntimeError(
                "redis-server is not installed: run ./scripts/test (it installs it) "
                "or apt-get install redis-server"
            )
        self.binary = found
        self.root = Path(tempfile.mkdtemp(prefix="squidmesh-redis-"))
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers."""
        with (self.root / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root)),
                    *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.root / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        """Stop the server (SIGTERM: it finishes writing its append-only file)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
