"""A private, throwaway PostgreSQL server for tests and benchmarks.

The shared server started by ``scripts/test`` must stay up for every other test; a test that
restarts PostgreSQL under running workers gets a server of its own from here instead. It uses
the same binaries (``/usr/lib/postgresql/*/bin``) and, as root, runs them as ``postgres``.

By default the server runs with ``fsync=off``, like the test server: fast, and fine for data
that is thrown away. The benchmarks pass ``durable=True`` to measure what a production server
does: ``fsync=on`` and ``synchronous_commit=on``, so every commit waits for its WAL flush.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PrivateServer", "binaries"]


def binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, if PostgreSQL is installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _free_port() -> int:
    """A TCP port of 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateServer:
    """initdb + pg_ctl in a temporary directory, on a free loopback port.

    Args:
        durable: Start with ``fsync=on`` and ``synchronous_commit=on`` (the PostgreSQL
            defaults, stated explicitly) instead of the tests' ``fsync=off``.
    """

    def __init__(self, *, durable: bool = False) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="squidmesh-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.durable = durable
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server's ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start (or restart after :meth:`stop`) the server and wait until it accepts clients."""
        settings = "-c fsync=on -c synchronous_commit=on" if self.durable else "-c fsync=off"
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} {settings}"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` disconnects clients; ``immediate`` is a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Stop the server if it runs and delete its files."""
        subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def _command(self, program: str, *args: str) -> list[str]:
        """The command line of a PostgreSQL program (through ``runuser`` as root)."""
        command = [str(self.bin / program), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_root else command

    def _run(self, program: str, *args: str) -> None:
        """Run a PostgreSQL program in the server's directory; raise if it fails."""
        subprocess.run(
            self._command(program, *args), cwd=self.root, capture_output=True, check=True
        )
