"""A workflow graph drawn as SVG on the server, from the definition's JSON form.

The input is :meth:`WorkflowDefinition.to_dict` (steps, edges, entry steps), not the graph
classes, so a step kind, an edge kind or an edge field this module has never heard of still
draws: an unknown edge kind is drawn as a labelled route, an edge's ``label`` / ``condition``
/ ``timeout`` (when present) join its label, an unknown status gets the neutral style and is
spelled out in the node.

The layout is a small layered (Sugiyama-style) one: back edges found by a depth-first walk
from the entry steps are set aside (drawn as arcs on the right), every node gets the layer of
its longest path from an entry, edges that skip layers pass through invisible waypoints, the
order inside each layer is improved by barycentre sweeps, and x positions are pulled towards
the neighbours' without overlapping. No JavaScript and no CDN: the SVG is inline in the page.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from squidmesh_sdk.ui.present import css_slug

__all__ = ["NodeState", "render_graph"]

START = "__start__"
COMPLETE = "__complete__"

NODE_HEIGHT = 54
LAYER_GAP = 46
NODE_GAP = 28
CHAR_WIDTH = 7.2  # px per character of the 12 px sans-serif the stylesheet sets
MIN_WIDTH = 128
DUMMY_WIDTH = 12
MARGIN = 16


@dataclass(frozen=True, slots=True)
class NodeState:
    """What a run did at one declared step, for the picture.

    Attributes:
        status: The status to show and style by (any string).
        detail: A short second line, e.g. ``"3 of 5 completed"`` for a map or a loop.
        current: Whether the run's status is about this step (it waits or runs here).
    """

    status: str
    detail: str | None = None
    current: bool = False


@dataclass(slots=True)
class _Node:
    key: str
    label: str
    kind: str
    dummy: bool = False
    width: float = MIN_WIDTH
    layer: int = 0
    x: float = 0.0  # centre
    y: float = 0.0  # top
    order: float = 0.0


@dataclass(slots=True)
class _Edge:
    source: str
    target: str
    kind: str
    label: str | None
    back: bool = False
    taken: bool = False
    path: list[str] = field(default_factory=list)  # the node keys it passes, ends included


def render_graph(
    definition: Mapping[str, Any],
    states: Mapping[str, NodeState] | None = None,
    *,
    taken: frozenset[tuple[str, str]] = frozenset(),
    link_prefix: str | None = "#step-",
) -> Markup:
    """The graph of ``definition`` (its ``to_dict()`` form) as an inline ``<svg>`` element.

    Args:
        definition: The workflow's JSON form.
        states: Step name to its state in a run; without it, the declared graph alone.
        taken: ``(source, target)`` pairs of edges the run went along, drawn highlighted.
        link_prefix: Each step links to ``link_prefix + name`` (``None``: no links).
    """
    states = states or {}
    nodes, edges = _build(definition, taken)
    _layer(nodes, edges, definition)
    layers = _split_long_edges(nodes, edges)
    _order(layers, nodes, edges)
    width, height = _place(layers, nodes, edges)
    return _svg(nodes, edges, states, width, height, link_prefix)


# -- building --------------------------------------------------------------------------------


def _build(
    definition: Mapping[str, Any], taken: frozenset[tuple[str, str]]
) -> tuple[dict[str, _Node], list[_Edge]]:
    nodes: dict[str, _Node] = {}
    steps: Sequence[Mapping[str, Any]] = definition.get("steps") or ()
    for step in steps:
        name = str(step.get("name"))
        nodes[name] = _Node(name, name, str(step.get("kind", "step")))
    edges: list[_Edge] = []
    entries = [str(e) for e in definition.get("entry_steps") or () if str(e) in nodes]
    if not entries and steps:
        entries = [str(steps[0].get("name"))]
    if entries:
        nodes[START] = _Node(START, "start", "start")
        edges.extend(
            _Edge(START, entry, "start", None, taken=(START, entry) in taken) for entry in entries
        )
    approval = {name for name, node in nodes.items() if node.kind == "approval"}
    for raw in definition.get("edges") or ():
        source, target = str(raw.get("source")), str(raw.get("target"))
        for end in (source, target):
            if end not in nodes:
                label = "complete" if end == COMPLETE else end
                nodes[end] = _Node(end, label, "complete" if end == COMPLETE else "unknown")
        kind = str(raw.get("kind", "route"))
        edges.append(
            _Edge(
                source,
                target,
                kind,
                _edge_label(raw, kind, source in approval),
                taken=(source, target) in taken,
            )
        )
    edges = _merged(edges)
    for node in nodes.values():
        longest = max(len(node.label), len(node.kind) + 14)
        node.width = max(MIN_WIDTH, longest * CHAR_WIDTH + 24)
        if node.kind in ("start", "complete"):
            node.width = 84
    return nodes, edges


def _merged(edges: list[_Edge]) -> list[_Edge]:
    """One arrow per pair of steps, saying every route between them.

    Two routes from one step to another (its ``ok`` and ``error`` routes to the same step, two
    branch labels, an approval's approved and rejected) would be drawn along the same path,
    their labels printed over each other. The arrow takes the first route's kind (its colour)
    and is highlighted if the run went along any of them.
    """
    merged: dict[tuple[str, str], _Edge] = {}
    for edge in edges:
        first = merged.setdefault((edge.source, edge.target), edge)
        if first is edge:
            continue
        labels = [label for label in (first.label, edge.label) if label]
        first.label = " / ".join(dict.fromkeys(labels)) or None
        first.taken = first.taken or edge.taken
    return list(merged.values())


def _edge_label(raw: Mapping[str, Any], kind: str, approval: bool) -> str | None:
    """What the arrow says: the route's outcome and whatever else the edge carries."""
    if kind == "after":
        base = None
    elif kind == "ok":
        base = "approved" if approval else "ok"
    elif kind == "error":
        base = "rejected" if approval else "error"
    else:
        base = kind
    if base and raw.get("recovery"):
        base = f"{base}: {raw['recovery']}"
    extras = [
        _short(raw[key])
        for key in ("label", "condition", "timeout")
        if raw.get(key) not in (None, "", {}, [])
    ]
    return " · ".join([base, *extras] if base else extras) or None


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        text = " ".join(f"{k}={_short(v)}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        text = ", ".join(_short(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


# -- layering --------------------------------------------------------------------------------


def _layer(nodes: dict[str, _Node], edges: list[_Edge], definition: Mapping[str, Any]) -> None:
    """Mark back edges (a DFS from the start), then give each node its longest-path layer."""
    successors: dict[str, list[_Edge]] = {key: [] for key in nodes}
    for edge in edges:
        successors[edge.source].append(edge)
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
    roots = [START] if START in nodes else []
    roots += [key for key in nodes if key not in roots]
    for root in roots:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            key, index = stack[-1]
            out = successors[key]
            if index < len(out):
                stack[-1] = (key, index + 1)
                edge = out[index]
                seen = state.get(edge.target)
                if seen == 1 or edge.target == edge.source:
                    edge.back = True
                elif seen is None:
                    state[edge.target] = 1
                    stack.append((edge.target, 0))
            else:
                state[key] = 2
                stack.pop()
    incoming: dict[str, int] = dict.fromkeys(nodes, 0)
    for edge in edges:
        if not edge.back:
            incoming[edge.target] += 1
    ready = [key for key in nodes if incoming[key] == 0]
    while ready:
        key = ready.pop(0)
        for edge in successors[key]:
            if edge.back:
                continue
            target = nodes[edge.target]
            target.layer = max(target.layer, nodes[key].layer + 1)
            incoming[edge.target] -= 1
            if incoming[edge.target] == 0:
                ready.append(edge.target)
    # The completion marker sits below everything that leads to it.
    if COMPLETE in nodes:
        deepest = max(node.layer for key, node in nodes.items() if key != COMPLETE)
        nodes[COMPLETE].layer = max(nodes[COMPLETE].layer, deepest + 1)


def _split_long_edges(nodes: dict[str, _Node], edges: list[_Edge]) -> list[list[str]]:
    """Give every forward edge one waypoint per layer it crosses; return the layers."""
    for index, edge in enumerate(edges):
        edge.path = [edge.source]
        if not edge.back:
            low, high = nodes[edge.source].layer, nodes[edge.target].layer
            for layer in range(low + 1, high):
                key = f"\x00{index}:{layer}"
                nodes[key] = _Node(key, "", "dummy", dummy=True, width=DUMMY_WIDTH, layer=layer)
                edge.path.append(key)
        edge.path.append(edge.target)
    depth = max((node.layer for node in nodes.values()), default=0) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    for key, node in nodes.items():  # insertion order: declaration order first
        layers[node.layer].append(key)
    return layers


def _order(layers: list[list[str]], nodes: dict[str, _Node], edges: list[_Edge]) -> None:
    """Reduce crossings: sort each layer by the mean position of its neighbours, both ways."""
    up: dict[str, list[str]] = {key: [] for key in nodes}
    down: dict[str, list[str]] = {key: [] for key in nodes}
    for edge in edges:
        if edge.back:
            continue
        for a, b in zip(edge.path, edge.path[1:], strict=False):
            down[a].append(b)
            up[b].append(a)
    for layer in layers:
        for position, key in enumerate(layer):
            nodes[key].order = position
    for sweep in range(8):
        downward = sweep % 2 == 0
        sequence = layers[1:] if downward else list(reversed(layers[:-1]))
        for layer in sequence:
            for key in layer:
                neighbours = up[key] if downward else down[key]
                if neighbours:
                    nodes[key].order = sum(nodes[n].order for n in neighbours) / len(neighbours)
            layer.sort(key=lambda k: nodes[k].order)
            for position, key in enumerate(layer):
                nodes[key].order = position


def _place(layers: list[list[str]], nodes: dict[str, _Node], edges: list[_Edge]) -> tuple[int, int]:
    """Place every node (x: its centre, y: its top); return the drawing's size."""
    neighbours: dict[str, list[str]] = {key: [] for key in nodes}
    for edge in edges:
        if edge.back:
            continue
        for a, b in zip(edge.path, edge.path[1:], strict=False):
            neighbours[a].append(b)
            neighbours[b].append(a)
    for index, layer in enumerate(layers):
        x = 0.0
        for key in layer:
            node = nodes[key]
            node.x = x + node.width / 2
            node.y = MARGIN + index * (NODE_HEIGHT + LAYER_GAP)
            x += node.width + NODE_GAP
    for _ in range(6):
        for layer in layers:
            wanted = []
            for key in layer:
                near = neighbours[key]
                wanted.append(sum(nodes[n].x for n in near) / len(near) if near else nodes[key].x)
            _resolve(layer, nodes, wanted)
    left = min((nodes[k].x - nodes[k].width / 2 for k in nodes), default=0.0)
    for node in nodes.values():
        node.x += MARGIN - left
    right = max((n.x + n.width / 2 for n in nodes.values()), default=0.0)
    backs = sum(1 for edge in edges if edge.back)
    width = int(right + MARGIN + (24 + 14 * backs if backs else 0))
    height = int(MARGIN * 2 + len(layers) * (NODE_HEIGHT + LAYER_GAP) - LAYER_GAP)
    return width, height


def _resolve(layer: list[str], nodes: dict[str, _Node], wanted: list[float]) -> None:
    """Move the nodes of a layer to their wanted x, keeping order and gaps (left, then right)."""
    placed: list[float] = []
    for index, key in enumerate(layer):
        x = wanted[index]
        if placed:
            previous = nodes[layer[index - 1]]
            minimum = placed[-1] + previous.width / 2 + NODE_GAP + nodes[key].width / 2
            x = max(x, minimum)
        placed.append(x)
    # Shift the whole layer back towards where it wanted to be, on average.
    shift = (sum(wanted) - sum(placed)) / len(placed) if placed else 0.0
    for key, x in zip(layer, placed, strict=True):
        nodes[key].x = x + min(shift, 0.0)


# -- drawing ---------------------------------------------------------------------------------


def _svg(
    nodes: dict[str, _Node],
    edges: list[_Edge],
    states: Mapping[str, NodeState],
    width: int,
    height: int,
    link_prefix: str | None,
) -> Markup:
    parts = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="workflow graph">',
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker>'
        '<marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead taken"/></marker>'
        "</defs>",
    ]
    right = max((n.x + n.width / 2 for n in nodes.values() if not n.dummy), default=0.0)
    back_index = 0
    labels: list[str] = []
    for edge in edges:
        classes = f"edge k-{css_slug(edge.kind)}" + (" taken" if edge.taken else "")
        marker = "url(#arrow-taken)" if edge.taken else "url(#arrow)"
        if edge.back:
            back_index += 1
            d, (lx, ly) = _back_path(nodes[edge.source], nodes[edge.target], right, back_index)
            classes += " back"
        else:
            d, (lx, ly) = _forward_path([nodes[key] for key in edge.path])
        title = f"{edge.source} → {edge.target}" + (f" ({edge.label})" if edge.label else "")
        parts.append(
            f'<path class="{classes}" d="{d}" marker-end="{marker}" '
            f'data-source="{escape(edge.source)}" data-target="{escape(edge.target)}">'
            f"<title>{escape(title)}</title></path>"
        )
        if edge.label:
            labels.append(
                f'<text class="edge-label k-{css_slug(edge.kind)}" x="{lx:.1f}" y="{ly:.1f}" '
                f'text-anchor="middle">{escape(edge.label)}</text>'
            )
    parts.extend(labels)
    parts.extend(
        _node_svg(node, states.get(node.key), link_prefix)
        for node in nodes.values()
        if not node.dummy
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above went through escape()


def _forward_path(points: list[_Node]) -> tuple[str, tuple[float, float]]:
    """A smooth vertical path from the bottom of the first node to the top of the last."""
    first, last = points[0], points[-1]
    coords = [(first.x, first.y + NODE_HEIGHT)]
    coords += [(p.x, p.y + NODE_HEIGHT / 2) for p in points[1:-1]]
    coords.append((last.x, last.y - 2))
    d = f"M{coords[0][0]:.1f},{coords[0][1]:.1f}"
    for (x0, y0), (x1, y1) in itertools.pairwise(coords):
        mid = (y0 + y1) / 2
        d += f" C{x0:.1f},{mid:.1f} {x1:.1f},{mid:.1f} {x1:.1f},{y1:.1f}"
    (x0, y0), (x1, y1) = coords[0], coords[1]
    return d, ((x0 + x1) / 2, (y0 + y1) / 2 + 4)


def _back_path(
    source: _Node, target: _Node, right: float, index: int
) -> tuple[str, tuple[float, float]]:
    """An arc out of the source's right side, up (or down) the right margin, into the target."""
    sx, sy = source.x + source.width / 2, source.y + NODE_HEIGHT / 2
    tx, ty = target.x + target.width / 2, target.y + NODE_HEIGHT / 2 - 8
    lane = right + 14 * index + 8
    middle = (sy + ty) / 2
    d = (
        f"M{sx:.1f},{sy:.1f} C{lane:.1f},{sy:.1f} {lane:.1f},{sy:.1f} {lane:.1f},{middle:.1f}"
        f" C{lane:.1f},{ty:.1f} {lane:.1f},{ty:.1f} {tx + 2:.1f},{ty:.1f}"
    )
    return d, (lane - 4, (sy + ty) / 2 - 4)


def _node_svg(node: _Node, state: NodeState | None, link_prefix: str | None) -> str:
    x, y, w = node.x - node.width / 2, node.y, node.width
    key = escape(node.key)
    if node.kind in ("start", "complete"):
        return (
            f'<g class="node terminal k-{node.kind}" data-step="{key}">'
            f'<rect x="{x:.1f}" y="{y + 12:.1f}" width="{w:.1f}" height="{NODE_HEIGHT - 24}" '
            f'rx="15"/><text x="{node.x:.1f}" y="{y + NODE_HEIGHT / 2 + 4:.1f}" '
            f'text-anchor="middle">{escape(node.label)}</text></g>'
        )
    status = state.status if state is not None else None
    classes = f"node k-{css_slug(node.kind)}"
    if status is not None:
        classes += f" st-{css_slug(status)}"
    if state is not None and state.current:
        classes += " current"
    second = node.kind if status is None else f"{node.kind} · {status}"
    lines = [
        f'<text class="name" x="{node.x:.1f}" y="{y + 20:.1f}" text-anchor="middle">'
        f"{escape(node.label)}</text>",
        f'<text class="sub" x="{node.x:.1f}" y="{y + 36:.1f}" text-anchor="middle">'
        f"{escape(second)}</text>",
    ]
    if state is not None and state.detail:
        lines.append(
            f'<text class="sub detail" x="{node.x:.1f}" y="{y + 49:.1f}" '
            f'text-anchor="middle">{escape(state.detail)}</text>'
        )
    title = f"{node.label} ({node.kind})" + (f": {status}" if status else "")
    if state is not None and state.detail:
        title += f", {state.detail}"
    body = (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{NODE_HEIGHT}" rx="6"/>'
        + "".join(lines)
        + f"<title>{escape(title)}</title>"
    )
    if link_prefix is not None:
        body = f'<a href="{escape(link_prefix + node.key)}">{body}</a>'
    status_attr = f' data-status="{escape(status)}"' if status is not None else ""
    return f'<g class="{classes}" data-step="{key}"{status_attr}>{body}</g>'
