"""The observer that turns committed runtime events into OpenTelemetry events and metrics."""

from __future__ import annotations

from opentelemetry import trace

from squidmesh_sdk import state_machine, telemetry
from squidmesh_sdk.runtime.events import (
    RetryScheduled,
    RunCreated,
    RunEvent,
    RunTransitioned,
    StepCompleted,
    StepFailed,
    StepSkipped,
)

__all__ = ["TelemetryObserver"]

_runs_started = telemetry.meter.create_counter(
    "squidmesh.runs.started", unit="{run}", description="Runs created (replays included)"
)
_runs_finished = telemetry.meter.create_counter(
    "squidmesh.runs.finished", unit="{run}", description="Runs that reached a final status"
)
_step_duration = telemetry.meter.create_histogram(
    "squidmesh.step.duration", unit="s", description="Duration of step attempts"
)
_retries = telemetry.meter.create_counter(
    "squidmesh.step.retries", unit="{retry}", description="Step retries scheduled"
)


_SPAN_EVENTS = (RunTransitioned, RetryScheduled, StepSkipped)
"""The events recorded as events of the current span (the others are metrics only)."""


class TelemetryObserver:
    """Run transitions as span events, a span for each finished run's whole life, metrics.

    Installed by every :class:`~squidmesh_sdk.Client`. It runs after commit, in the thread
    (and so inside the span) that made the change.
    """

    def emit(self, event: RunEvent) -> None:
        """Record ``event``."""
        # Without a provider installed every metric is dropped; a span event still lands on
        # a current span that records (one of a provider the host did not install globally).
        if not telemetry.recording() and (
            not isinstance(event, _SPAN_EVENTS) or not trace.get_current_span().is_recording()
        ):
            return
        run = event.run
        if isinstance(event, RunCreated):
            _runs_started.add(1, {telemetry.WORKFLOW: run.workflow, telemetry.TRIGGER: run.trigger})
        elif isinstance(event, RunTransitioned):
            self._transitioned(event)
        elif isinstance(event, StepCompleted | StepFailed):
            if not telemetry.metering():
                return  # a metric only: nothing would take it (every step emits one)
            outcome = "completed" if isinstance(event, StepCompleted) else "failed"
            _step_duration.record(
                event.duration.total_seconds(),
                {
                    telemetry.WORKFLOW: run.workflow,
                    telemetry.STEP: event.step,
                    telemetry.OUTCOME: outcome,
                },
            )
        elif isinstance(event, RetryScheduled):
            _retries.add(1, {telemetry.WORKFLOW: run.workflow, telemetry.STEP: event.step})
            trace.get_current_span().add_event(
                "retry scheduled",
                {telemetry.STEP: event.step, "squidmesh.retry.delay": event.delay},
            )
        elif isinstance(event, StepSkipped):
            trace.get_current_span().add_event(
                "delivery skipped", {telemetry.STEP: event.step, "squidmesh.reason": event.reason}
            )

    def _transitioned(self, event: RunTransitioned) -> None:
        run = event.run
        trace.get_current_span().add_event(
            "run transition",
            {telemetry.FROM_STATUS: event.from_status, telemetry.TO_STATUS: event.to_status},
        )
        if event.to_status not in state_machine.TERMINAL:
            return
        _runs_finished.add(1, {telemetry.WORKFLOW: run.workflow, "squidmesh.status": run.status})
        # The run's whole life as one span, from its real start to the commit that finished it
        # (both read from the runtime's clock, like every time the run records): emitted by
        # whichever process finished it, in the run's trace.
        attributes = telemetry.run_attributes(
            run.workflow,
            run.id,
            **{telemetry.TRIGGER: run.trigger, telemetry.OUTCOME: run.status},
        )
        life = telemetry.tracer.start_span(
            f"run {run.workflow} {run.status}",
            context=telemetry.context_of(run.trace_context),
            attributes=attributes,
            start_time=telemetry.nanoseconds(run.inserted_at),
        )
        if run.status == "failed":
            error = run.last_error or {}
            error_type, message = error.get("type"), error.get("message")
            telemetry.fail(
                life,
                error_type if isinstance(error_type, str) else "failed",
                message if isinstance(message, str) else None,
            )
        life.end(end_time=telemetry.nanoseconds(max(run.updated_at, run.inserted_at)))
