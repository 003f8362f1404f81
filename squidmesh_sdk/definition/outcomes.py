"""Route vocabulary for transition workflows: outcomes, recovery labels and ``COMPLETE``."""

from __future__ import annotations

from enum import Enum
from typing import Final, Literal

__all__ = ["COMPLETE", "Complete", "Outcome", "RecoveryLabel"]

Outcome = Literal["ok", "error"]
"""How a step ended: ``"ok"`` when it returned, ``"error"`` once retries are exhausted."""

RecoveryLabel = Literal["compensation", "undo"]
"""Labels an error route as a forward compensation or an undo of local work (audit only)."""


class Complete(Enum):
    """Type of :data:`COMPLETE`, the route target that finishes the run successfully."""

    COMPLETE = "__complete__"

    def __repr__(self) -> str:
        return "COMPLETE"


COMPLETE: Final = Complete.COMPLETE
"""Route target meaning "the run is complete"."""
