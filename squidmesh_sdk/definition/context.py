"""What a running step can know about itself."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from squidmesh_sdk.frozen import fast_init

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["StepContext", "StepLogger"]


class StepLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter whose fields are added to the ``extra`` of each call, not swapped for it.

    (The standard adapter drops the caller's ``extra`` before Python 3.13.)
    """

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        """Merge the adapter's fields into the call's ``extra``."""
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return msg, kwargs


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    """Run and attempt facts handed to a step that asks for them.

    Declare a parameter annotated ``StepContext`` (any name) and the runtime passes it.

    Attributes:
        run_id: The run's id.
        workflow: The workflow name.
        step: The step name.
        attempt: The attempt number, from 1.
        trigger: The trigger that started the run.
        payload: The run's validated payload (read-only).
        schedule: Schedule metadata of a cron-started run (``signal_id``, ``intended_window``,
            ``received_at``...), else ``None``.
        compensating: ``True`` when this call is a saga compensation callback.
        failure: For compensation callbacks, the error that failed the run.
        connection: For ``transaction=True`` steps, the SQLAlchemy connection of the step's
            transaction: write through it and the writes commit or roll back with the step.
        logger: A logger whose records carry run id, workflow, step and attempt.
    """

    run_id: str
    workflow: str
    step: str
    attempt: int
    trigger: str
    payload: Mapping[str, Any]
    schedule: Mapping[str, Any] | None = None
    compensating: bool = False
    failure: Mapping[str, Any] | None = None
    connection: Connection | None = None
    logger: logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: StepLogger(logging.getLogger("squidmesh_sdk.step"))
    )
