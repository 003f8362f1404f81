"""Route vocabulary: outcomes, branch labels, recovery labels and ``COMPLETE``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal

__all__ = ["COMPLETE", "Branch", "Complete", "Outcome", "RecoveryLabel"]

Outcome = Literal["ok", "error", "timeout"]
"""How a step ended: ``"ok"`` when it returned, ``"error"`` once retries are exhausted,
``"timeout"`` when an approval, pause or wait ran out of time. A route may also name a branch
label that a step returns with :class:`Branch`."""


@dataclass(frozen=True, slots=True)
class Branch:
    """A step's result that picks a labelled route: ``return Branch("large", {"total": t})``.

    The step completes with ``output`` (stored like any returned mapping or model) and the run
    follows the route declared with ``on="large"``. A label without such a route fails the run
    with an error naming the labels that do have one.

    Attributes:
        label: The route to follow (an identifier, like a step name).
        output: The step's output: a mapping, a pydantic model or ``None``.
    """

    label: str
    output: Mapping[str, Any] | Any = None


RecoveryLabel = Literal["compensation", "undo"]
"""Labels an error route as a forward compensation or an undo of local work (audit only)."""


class Complete(Enum):
    """Type of :data:`COMPLETE`, the route target that finishes the run successfully."""

    COMPLETE = "__complete__"

    def __repr__(self) -> str:
        return "COMPLETE"


COMPLETE: Final = Complete.COMPLETE
"""Route target meaning "the run is complete"."""
