"""The ``squidmesh`` operator command line.

::

    squidmesh --app myapp.workflows:client migrate
    squidmesh worker --queue default --concurrency 8
    squidmesh runs list --status paused
    squidmesh runs approve 0193... --actor ops@example.com --comment "checked"

The app is found through ``--app module.path:attribute`` or ``SQUIDMESH_APP`` (see
:mod:`squidmesh_sdk.cli.app`). Every error is one line on stderr starting ``squidmesh: error:``;
exit codes are 0 (success), 1 (the operation failed or was refused), 2 (usage error), 3 / 4 / 5
(``runs start --wait`` and ``runs show --follow``: the run failed, was cancelled, or the
timeout ran out) and 130 (interrupted). ``docs/cli.md`` describes every command and JSON shape.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from squidmesh_sdk.cli.app import one_line
from squidmesh_sdk.cli.commands import Context
from squidmesh_sdk.cli.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
)
from squidmesh_sdk.cli.parser import build_parser
from squidmesh_sdk.errors import SquidmeshError

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "MSG_DATABASE", "main"]

MSG_DATABASE = "database error: {error}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``squidmesh`` with ``argv`` (``sys.argv[1:]`` by default); return the exit code.

    Output goes to ``sys.stdout``, errors to ``sys.stderr`` as one ``squidmesh: error:`` line;
    no exception escapes for usage, library (:class:`~squidmesh_sdk.SquidmeshError`) or
    database errors.

    Args:
        argv: The arguments, without the program name.

    Returns:
        0 on success, 1 when the operation failed or was refused, 2 for a usage error, 3 / 4 /
        5 when a waited-for run failed, was cancelled or outlasted ``--timeout``, 130 when
        interrupted.
    """
    err = sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except CliError as exc:
        return _fail(err, str(exc), exc.exit_code)
    except SystemExit as exc:  # --help and --version print, then exit
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    ctx = Context(getattr(args, "app", None), sys.stdout, err)
    try:
        code: int = args.handler(args, ctx)
    except CliError as exc:
        return _fail(err, str(exc), exc.exit_code)
    except SquidmeshError as exc:
        return _fail(err, one_line(str(exc)), EXIT_FAILURE)
    except SQLAlchemyError as exc:
        return _fail(err, MSG_DATABASE.format(error=_first_line(exc)), EXIT_FAILURE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. 'squidmesh runs list | head -1'
        _silence_stdout()
        return EXIT_FAILURE
    finally:
        ctx.close()
    return code


def _fail(err: TextIO, message: str, code: int) -> int:
    err.write(f"squidmesh: error: {message}\n")
    err.flush()
    return code


def _first_line(exc: SQLAlchemyError) -> str:
    # SQLAlchemy appends the statement and a documentation link on later lines.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a file descriptor: nothing to flush
        pass
