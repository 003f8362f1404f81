"""Workflows as the client knows them.

Declarations that do not compile, and workflows, versions and triggers it was not given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from squidmesh_sdk.errors.base import SquidmeshError

__all__ = [
    "DefinitionError",
    "DefinitionUnavailable",
    "InvalidTrigger",
    "InvalidWorkflow",
    "Issue",
]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a workflow declaration.

    Attributes:
        code: A stable machine-readable identifier such as ``"dependency_cycle"``.
        step: The step the problem belongs to, or ``None`` for workflow-level problems.
        message: A sentence that names the problem and how to fix it.
    """

    code: str
    step: str | None
    message: str

    def __str__(self) -> str:
        return self.message


class DefinitionError(SquidmeshError, ValueError):
    """A workflow declaration is invalid.

    The compiler collects every problem before raising, so one error lists them all.

    Attributes:
        workflow: The name of the workflow that failed to compile.
        issues: Every problem found, in a stable order.
    """

    code = "invalid_definition"

    def __init__(self, workflow: str, issues: Iterable[Issue]) -> None:
        self.workflow = workflow
        self.issues: tuple[Issue, ...] = tuple(issues)
        lines = "\n".join(f"- [{issue.code}] {issue.message}" for issue in self.issues)
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"workflow {workflow!r} has {count} {noun}:\n{lines}")

    @property
    def codes(self) -> tuple[str, ...]:
        """The issue codes, in order; handy in tests and logs."""
        return tuple(issue.code for issue in self.issues)


class InvalidWorkflow(SquidmeshError, LookupError):
    """The workflow is not one this client was given.

    Runs name their workflow; a worker can only execute workflows it was constructed with.

    Attributes:
        workflow: The workflow name that was asked for.
        known: The workflow names the client does know.
    """

    code = "invalid_workflow"

    def __init__(self, workflow: str, known: Sequence[str]) -> None:
        self.workflow = workflow
        self.known = tuple(known)
        listed = ", ".join(self.known) or "none"
        super().__init__(
            f"workflow {workflow!r} is not registered with this client; registered: {listed}"
        )


class DefinitionUnavailable(InvalidWorkflow):
    """The client holds the run's workflow, but not the version the run is pinned to.

    A run keeps the definition version it started on. A process that holds other versions
    only leaves its work alone: the database queue does not claim it, other executors have it
    delivered again later. Deploy that version beside the new one (``Client(workflows=[v1,
    v2])``), cancel the run, or replay it on the current version.

    Attributes:
        workflow: The workflow name.
        version: The version the run is pinned to.
        held: The versions of the workflow this client holds.
        run_id: The run, when known.
        step: The step the run needs that the held version lacks, when the version is held
            but was kept across a change that removed the step.
    """

    code = "definition_unavailable"

    def __init__(
        self,
        workflow: str,
        version: str,
        held: Sequence[str],
        *,
        run_id: str | None = None,
        step: str | None = None,
    ) -> None:
        self.workflow = workflow
        self.known = (workflow,)
        self.version = version
        self.held = tuple(held)
        self.run_id = run_id
        self.step = step
        subject = f"run {run_id}" if run_id else "the run"
        if step is not None:
            message = (
                f"{subject} needs step {step!r}, which version {version!r} of workflow "
                f"{workflow!r} held by this client no longer declares (the version was kept "
                "across a change that removed it): deploy the version the run started on, "
                "cancel the run, or replay it on the current version"
            )
        else:
            message = (
                f"{subject} is pinned to version {version!r} of workflow {workflow!r}, which "
                f"this client does not hold (it holds {', '.join(map(repr, self.held))}): "
                "deploy that version beside the new one, cancel the run, or replay it on the "
                "current version"
            )
        SquidmeshError.__init__(self, message)


class InvalidTrigger(SquidmeshError, LookupError):
    """The workflow declares no trigger of this name.

    Attributes:
        workflow: The workflow name.
        trigger: The trigger name that was asked for.
        known: The triggers the workflow does declare.
    """

    code = "invalid_trigger"

    def __init__(self, workflow: str, trigger: str, known: Sequence[str]) -> None:
        self.workflow = workflow
        self.trigger = trigger
        self.known = tuple(known)
        super().__init__(
            f"workflow {workflow!r} has no trigger {trigger!r}; declared: {', '.join(self.known)}"
        )
