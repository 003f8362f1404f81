"""Read models over a run: its declared steps' states."""

from __future__ import annotations

from collections.abc import Sequence

from squidmesh_sdk.graph import StepKey, WorkflowDefinition
from squidmesh_sdk.store.records import StepRun, StepState

__all__ = ["step_states"]


def step_states(
    definition: WorkflowDefinition, step_runs: Sequence[StepRun]
) -> tuple[StepState, ...]:
    """Every declared step with its step run's state, or ``waiting`` when it has none.

    A step a loop ran again shows its newest iteration (``draft@2``), a map step its own step
    run (its elements are in the run's ``step_runs``). Order: declaration order for graphs
    without ``after=``; phase, then declaration order, for the others. Step runs of steps the
    definition no longer declares come last, so nothing recorded is hidden.
    """
    by_step: dict[str, StepRun] = {}
    newest: dict[str, int] = {}
    for step_run in step_runs:
        key = StepKey.parse(step_run.step)
        if key.name in definition.steps:
            if key.item is not None or key.iteration < newest.get(key.name, 0):
                continue
            newest[key.name] = key.iteration
            by_step[key.name] = step_run
        else:
            by_step[step_run.step] = step_run
    nodes = list(definition.steps.values())
    if definition.shape != "transition":
        nodes.sort(key=lambda node: node.phase)  # stable: ties keep declaration order
    states = []
    for node in nodes:
        found = by_step.pop(node.name) if node.name in by_step else None
        if found is None:
            states.append(
                StepState(
                    step=node.name,
                    status="waiting",
                    depends_on=node.depends_on,
                    input=None,
                    output=None,
                    last_error=None,
                    recovery=node.recovery.to_dict(),
                    attempts=(),
                    inserted_at=None,
                    updated_at=None,
                )
            )
        else:
            states.append(_from_step_run(found, node.depends_on))
    states.extend(_from_step_run(step_run, ()) for step_run in by_step.values())
    return tuple(states)


def _from_step_run(step_run: StepRun, depends_on: tuple[str, ...]) -> StepState:
    return StepState(
        step=step_run.step,
        status=step_run.status,
        depends_on=depends_on,
        input=step_run.input,
        output=step_run.output,
        last_error=step_run.last_error,
        recovery=step_run.recovery,
        attempts=step_run.attempts or (),
        inserted_at=step_run.inserted_at,
        updated_at=step_run.updated_at,
    )
