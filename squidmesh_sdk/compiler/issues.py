"""What every compiler module shares: the issue collector and the name rule."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from squidmesh_sdk import errors

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}\Z")
r"""Workflow, trigger and step names: safe in SQL values, logs, URLs and Mermaid, and at most
100 characters, so that a step run's key (a step name and a suffix) fits its column. ``\Z``,
not ``$``, which lets a trailing newline through."""
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]{0,79}\Z")
"""A declared workflow version: a short label such as ``2``, ``2026-12-06`` or ``v2.1``."""


@dataclass
class Issues:
    """Collects problems in declaration order."""

    items: list[errors.Issue] = field(default_factory=list)

    def add(self, code: str, message: str, step: str | None = None) -> None:
        """Record one problem."""
        self.items.append(errors.Issue(code=code, step=step, message=message))
