"""Cron activations whose schedule identity is malformed or missing."""

from __future__ import annotations

from collections.abc import Sequence

from squidmesh_sdk.errors.base import SquidmeshError

__all__ = ["InvalidSchedule", "MissingScheduleIdempotencyKey"]


class InvalidSchedule(SquidmeshError, ValueError):
    """A cron activation's schedule identity is malformed or missing; no run was started.

    Attributes:
        workflow: The workflow.
        trigger: The cron trigger.
        problem: What is wrong (a bad ``signal_id``, a bad ``intended_window``, or an
            idempotent trigger activated without any identity).
        code: ``invalid_schedule_signal`` (the signal payload is not a mapping or not strict
            JSON), ``invalid_schedule_signal_id``, ``invalid_schedule_window`` or
            ``missing_schedule_idempotency_key``.
    """

    code = "invalid_schedule"

    def __init__(
        self, workflow: str, trigger: str, problem: str, *, code: str | None = None
    ) -> None:
        self.workflow = workflow
        self.trigger = trigger
        self.problem = problem
        if code is not None:
            self.code = code
        super().__init__(f"cron trigger {trigger!r} of workflow {workflow!r}: {problem}")


class MissingScheduleIdempotencyKey(InvalidSchedule):
    """An idempotent cron trigger was activated without a schedule identity; no run started.

    A trigger declared with ``idempotency`` starts one run per identity: the activation needs a
    ``signal_id``, or an ``intended_window`` with both bounds to derive one from.

    Attributes:
        code: ``"missing_schedule_idempotency_key"``.
        idempotency: The trigger's idempotency policy.
        missing: What the activation lacks, such as ``("signal_id", "intended_window.end_at")``.
    """

    code = "missing_schedule_idempotency_key"

    def __init__(
        self, workflow: str, trigger: str, idempotency: str, missing: Sequence[str]
    ) -> None:
        self.idempotency = idempotency
        self.missing = tuple(missing)
        super().__init__(
            workflow,
            trigger,
            f"idempotency {idempotency!r} needs a signal_id or an intended_window with both "
            f"start_at and end_at; missing: {', '.join(self.missing)}",
        )
