"""Finding the application's :class:`~squidmesh_sdk.Client`: ``--app`` or ``SQUIDMESH_APP``.

The value is ``module.path:attribute`` (``:client`` when the attribute is left out). The
attribute is a ``Client`` instance or a zero-argument callable that returns one, like the
``-A`` / ``APP_MODULE`` of celery and gunicorn. The current working directory is put first on
``sys.path``, so ``myapp.workflows:client`` works from the project's root.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from squidmesh_sdk.cli.errors import UsageError
from squidmesh_sdk.client import Client

__all__ = [
    "APP_ENV_VAR",
    "DEFAULT_ATTRIBUTE",
    "MSG_BAD_SPEC",
    "MSG_FACTORY_FAILED",
    "MSG_FACTORY_RETURNED",
    "MSG_IMPORT_FAILED",
    "MSG_NOT_A_CLIENT",
    "MSG_NO_APP",
    "MSG_NO_ATTRIBUTE",
    "app_spec",
    "load_attribute",
    "load_client",
    "one_line",
]

APP_ENV_VAR = "SQUIDMESH_APP"
"""The environment variable read when ``--app`` is not given."""

DEFAULT_ATTRIBUTE = "client"
"""The attribute looked up when the app names only a module."""

MSG_NO_APP = (
    "no app given: pass --app module.path:attribute or set SQUIDMESH_APP (see 'squidmesh --help')"
)
MSG_BAD_SPEC = "invalid app {spec!r}: expected module.path:attribute"
MSG_IMPORT_FAILED = "cannot import app module {module!r}: {error}"
MSG_NO_ATTRIBUTE = "app module {module!r} has no attribute {attribute!r}"
MSG_NOT_A_CLIENT = (
    "app {spec!r} is a {kind}, not a squidmesh_sdk.Client or a callable returning one"
)
MSG_FACTORY_FAILED = "app factory {spec!r} raised {error}"
MSG_FACTORY_RETURNED = "app factory {spec!r} returned a {kind}, not a squidmesh_sdk.Client"


def app_spec(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The app to load: ``explicit`` (from ``--app``), else ``SQUIDMESH_APP``.

    Raises:
        UsageError: neither is set (or both are blank).
    """
    environ = os.environ if environ is None else environ
    spec = (explicit or "").strip() or environ.get(APP_ENV_VAR, "").strip()
    if not spec:
        raise UsageError(MSG_NO_APP)
    return spec


def load_client(spec: str) -> Client:
    """Import ``module.path:attribute`` and return the client it names or builds.

    The current working directory is put first on ``sys.path`` (once).

    Raises:
        UsageError: a malformed spec, a module that fails to import, a missing attribute, or
            something that is not (and does not return) a ``Client``; always one line.
    """
    target = load_attribute(spec, DEFAULT_ATTRIBUTE)
    if isinstance(target, Client):
        return target
    if not callable(target):
        raise UsageError(MSG_NOT_A_CLIENT.format(spec=spec, kind=_kind(target)))
    try:
        built = target()
    except Exception as exc:  # the factory is the app's code
        raise UsageError(MSG_FACTORY_FAILED.format(spec=spec, error=_describe(exc))) from exc
    if not isinstance(built, Client):
        raise UsageError(MSG_FACTORY_RETURNED.format(spec=spec, kind=_kind(built)))
    return built


def load_attribute(spec: str, default_attribute: str | None = None) -> object:
    """Import ``module.path:attribute`` and return that attribute, as it is.

    The current working directory is put first on ``sys.path`` (once).

    Raises:
        UsageError: a malformed spec (or no attribute and no default), a module that fails to
            import, or a missing attribute; always one line.
    """
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or default_attribute or ""
    if not _dotted(module_name) or not _dotted(attribute):
        raise UsageError(MSG_BAD_SPEC.format(spec=spec))
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # any failure of the app's import is reported
        raise UsageError(
            MSG_IMPORT_FAILED.format(module=module_name, error=_describe(exc))
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(
                MSG_NO_ATTRIBUTE.format(module=module_name, attribute=attribute)
            ) from None
    return target


def one_line(text: str) -> str:
    """``text`` on one line: later lines are joined with ``"; "`` (list dashes dropped)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    rest = [line.removeprefix("- ") for line in lines[1:]]
    return " ".join([lines[0], "; ".join(rest)]) if rest else lines[0]


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _describe(exc: BaseException) -> str:
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _kind(value: object) -> str:
    if isinstance(value, type):
        return f"class {value.__qualname__}"
    return type(value).__qualname__
