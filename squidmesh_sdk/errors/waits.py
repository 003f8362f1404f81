"""A caller's wait that ended before the run did."""

from __future__ import annotations

from squidmesh_sdk.errors.base import SquidmeshError

__all__ = ["RunWaitTimeout"]


class RunWaitTimeout(SquidmeshError, TimeoutError):
    """``wait_for_run`` gave up: the run was not finished when its timeout ran out.

    The run is left as it is and goes on; wait again, or act on it (``cancel_run``). Also a
    ``TimeoutError``.

    Attributes:
        run_id: The run waited for.
        timeout: The seconds waited.
        status: The run's status when the wait ended.
    """

    code = "run_wait_timeout"

    def __init__(self, run_id: str, timeout: float, status: str) -> None:
        self.run_id = run_id
        self.timeout = timeout
        self.status = status
        super().__init__(
            f"run {run_id} is still {status} after waiting {timeout:g}s; it goes on, "
            "wait again or cancel it"
        )
