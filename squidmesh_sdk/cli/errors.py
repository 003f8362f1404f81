"""The CLI's own errors and exit codes.

Library errors (:class:`~squidmesh_sdk.errors.SquidmeshError`) are reported as they are; these
cover what only the command line can get wrong.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUN_CANCELLED",
    "EXIT_RUN_FAILED",
    "EXIT_USAGE",
    "EXIT_WAIT_TIMEOUT",
    "CliError",
    "CommandFailed",
    "UsageError",
    "WaitTimedOut",
]

EXIT_OK = 0
"""The command did what it was asked."""

EXIT_FAILURE = 1
"""The operation was refused or failed (a library or database error, a stale schema)."""

EXIT_USAGE = 2
"""The command line is wrong (bad arguments, malformed JSON, unknown workflow, no app)."""

EXIT_RUN_FAILED = 3
"""``runs start --wait`` / ``runs show --follow``: the run finished ``failed``."""

EXIT_RUN_CANCELLED = 4
"""``runs start --wait`` / ``runs show --follow``: the run finished ``cancelled``."""

EXIT_WAIT_TIMEOUT = 5
"""``runs start --wait`` / ``runs show --follow``: ``--timeout`` ran out first."""

EXIT_INTERRUPTED = 130
"""Interrupted with Ctrl-C (the shell convention: 128 + SIGINT)."""


class CliError(Exception):
    """An error the CLI reports as one line on stderr, then exits with :attr:`exit_code`."""

    exit_code = EXIT_FAILURE


class UsageError(CliError):
    """The command line cannot be acted on: nothing was attempted."""

    exit_code = EXIT_USAGE


class CommandFailed(CliError):
    """The command ran and its answer is a failure (for example ``migrate --check``)."""

    exit_code = EXIT_FAILURE


class WaitTimedOut(CliError):
    """``--timeout`` ran out before the run finished; the run goes on."""

    exit_code = EXIT_WAIT_TIMEOUT
