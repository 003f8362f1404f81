"""The Mermaid ``flowchart`` export of a compiled workflow graph."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from squidmesh_sdk.graph.nodes import COMPLETE_TARGET, Edge, StepNode

__all__ = ["flowchart"]


def flowchart(steps: Mapping[str, StepNode], edges: tuple[Edge, ...]) -> str:
    """A Mermaid ``flowchart`` of the graph.

    Dependency edges are plain arrows; routes are labelled arrows (their outcome or branch
    label, and their condition); ``error`` and ``timeout`` routes are dotted, an error
    route labelled with its recovery marker when it has one. An approval's routes read
    ``approved`` and ``rejected``; a map step's box names its list.
    """
    taken = frozenset(steps)
    ids = {name: _mermaid_id(name, taken) for name in steps}
    ids[COMPLETE_TARGET] = COMPLETE_TARGET
    lines = ["flowchart TD"]
    lines.extend(f"    {_mermaid_node(node, ids[node.name])}" for node in steps.values())
    if any(edge.target == COMPLETE_TARGET for edge in edges):
        lines.append(f'    {COMPLETE_TARGET}(("complete"))')
    for edge in edges:
        source, target = ids[edge.source], ids[edge.target]
        if edge.kind == "after":
            lines.append(f"    {source} --> {target}")
            continue
        label = _route_label(edge, approval=steps[edge.source].kind == "approval")
        if edge.kind in ("error", "timeout"):
            lines.append(f'    {source} -.->|"{_mermaid_text(label)}"| {target}')
        elif edge.condition is None:
            lines.append(f"    {source} -->|{label}| {target}")
        else:
            lines.append(f'    {source} -->|"{_mermaid_text(label)}"| {target}')
    return "\n".join(lines) + "\n"


def _route_label(edge: Edge, *, approval: bool) -> str:
    outcome = edge.outcome
    if approval and edge.kind in ("ok", "error"):
        outcome = "approved" if edge.kind == "ok" else "rejected"
    if edge.condition is not None:
        outcome = f"{outcome}: {edge.condition.describe()}"
    if edge.recovery:
        outcome = f"{outcome}: {edge.recovery}"
    return outcome


def _mermaid_text(text: str) -> str:
    """``text`` made safe inside a quoted Mermaid label."""
    return text.replace('"', "#quot;")


# Mermaid keywords that break a flowchart when used as a node id.
_MERMAID_RESERVED = frozenset({"end", "graph", "subgraph", "flowchart", "style", "class", "click"})


def _mermaid_id(name: str, taken: frozenset[str] = frozenset()) -> str:
    """The node id of ``name``: reserved words get a prefix that no other step name has."""
    if name.lower() not in _MERMAID_RESERVED:
        return name
    candidate = f"step_{name}"
    while candidate in taken:
        candidate = f"_{candidate}"
    return candidate


def _wait_text(options: Mapping[str, Any]) -> str:
    if options.get("duration") is not None:
        return f"{options['duration']:g}s"
    if options.get("duration_from") is not None:
        return f"seconds from {options['duration_from']}"
    return f"until {options.get('until_from')}"


def _mermaid_node(node: StepNode, node_id: str) -> str:
    label = "<br/>".join(_mermaid_label_lines(node))
    if node.kind == "log":
        return f'{node_id}[/"{label}"/]'
    if node.kind == "wait":
        return f'{node_id}(["{label}"])'
    if node.kind == "pause":
        return f'{node_id}{{{{"{label}"}}}}'
    if node.kind == "approval":
        return f'{node_id}{{"{label}"}}'
    if node.kind == "signal":
        return f'{node_id}>"{label}"]'
    if node.kind == "child":
        return f'{node_id}[["{label}"]]'
    return f'{node_id}["{label}"]'


def _mermaid_label_lines(node: StepNode) -> list[str]:
    """The step name, then the options an operator should see on the picture."""
    if node.kind == "wait":
        lines = [f"{node.name} (wait {_wait_text(node.options)})"]
    elif node.kind == "function":
        lines = [node.name]
    elif node.kind == "signal":
        lines = [f"{node.name} (signal {node.options.get('signal')})"]
    elif node.kind == "child":
        lines = [f"{node.name} (child {node.options.get('workflow')})"]
    else:
        lines = [f"{node.name} ({node.kind})"]
    if node.map_over is not None:
        limit = f", {node.max_parallel} at a time" if node.max_parallel else ""
        lines.append(f"map over {node.map_over}{limit}")
    if node.is_waiting and node.timeout is not None:
        lines.append(f"timeout {node.timeout:g}s")
    if node.retry is not None and node.retry.max_attempts > 1:
        lines.append(f"retry: {node.retry.max_attempts} attempts")
    if node.compensation is not None:
        lines.append(f"compensate: {node.compensation.qualname.rsplit('.', 1)[-1]}")
    if node.recovery.irreversible:
        lines.append("irreversible")
    elif not node.recovery.compensatable:
        lines.append("not compensatable")
    if node.transaction:
        lines.append("transaction")
    return lines
