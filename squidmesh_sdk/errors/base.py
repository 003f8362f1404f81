"""The root of every exception squidmesh_sdk raises on purpose."""

from __future__ import annotations

__all__ = ["SquidmeshError"]


class SquidmeshError(Exception):
    """Root of every exception raised on purpose by squidmesh_sdk.

    Attributes:
        code: A stable snake_case identifier of the error (see the module's tree).
    """

    code: str = "squidmesh_error"
