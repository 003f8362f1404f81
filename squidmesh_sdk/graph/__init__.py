"""The compiled, immutable workflow graph and its JSON / Mermaid exports.

Built only by :func:`squidmesh_sdk.compiler.compile`; everything here is frozen. The nodes and
edges are in :mod:`~squidmesh_sdk.graph.nodes`, the workflow that holds them in
:mod:`~squidmesh_sdk.graph.definition`, its Mermaid rendering in
:mod:`~squidmesh_sdk.graph.mermaid`.
"""

from squidmesh_sdk.graph.definition import WorkflowDefinition, route_cycles
from squidmesh_sdk.graph.nodes import (
    COMPLETE_TARGET,
    DEADLINE_STEP,
    Edge,
    RecoveryPolicy,
    RetryPolicy,
    StepKey,
    StepNode,
    TriggerNode,
)

__all__ = [
    "COMPLETE_TARGET",
    "DEADLINE_STEP",
    "Edge",
    "RecoveryPolicy",
    "RetryPolicy",
    "StepKey",
    "StepNode",
    "TriggerNode",
    "WorkflowDefinition",
    "route_cycles",
]
