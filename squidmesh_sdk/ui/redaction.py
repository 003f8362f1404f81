"""Redaction: what the inspector hides of payloads, context, outputs, errors and metadata.

A redactor is a callable ``(where, value) -> value`` that the inspector applies to every JSON
document it shows, before rendering. ``where`` names the document: ``"payload"``,
``"context"``, ``"input"``, ``"output"``, ``"error"``, ``"metadata"``, ``"explanation"``,
``"compensation"`` or ``"job"``. It returns what to show instead (it must not change the
value it was given). :func:`redact_keys` builds the common one.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MASK", "Redactor", "apply", "redact_keys"]

Redactor = Callable[[str, Any], Any]
"""``(where, value) -> value shown``: see the module docstring."""

MASK = "••••••"
"""What a redacted value is replaced with."""


def redact_keys(*patterns: str, mask: str = MASK) -> Redactor:
    """A redactor that masks the value of every key matching one of ``patterns``, at any depth.

    Patterns are shell-style and case-insensitive: ``"password"``, ``"*token*"``,
    ``"card_*"``.

    Example::

        create_app(client, auth=current_operator, redact=redact_keys("*password*", "iban"))
    """
    lowered = tuple(pattern.lower() for pattern in patterns)

    def hidden(key: object) -> bool:
        name = str(key).lower()
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in lowered)

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: (mask if hidden(k) else walk(v)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item) for item in value]
        return value

    def redact(where: str, value: Any) -> Any:
        del where  # the same keys are hidden everywhere
        return walk(value)

    return redact


def apply(redactor: Redactor | None, where: str, value: Any) -> Any:
    """``value`` as the redactor lets it be shown (unchanged without one)."""
    if redactor is None or value is None:
        return value
    return redactor(where, value)
