"""Geometry of the run page's two pictures, as plain numbers for the templates.

* :func:`graph_layout`: the step graph (:func:`agentic.graph.dependencies`) in columns by
  depth (a step's column is one more than its deepest dependency's), with an edge from each
  dependency to its dependent.
* :func:`timeline`: one row per step and one bar per attempt, from when it was queued (or
  started) to when it ended (now, while it runs), on the run's time axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from agentic.contracts import StepResult

NODE_W = 168
NODE_H = 46
COL_GAP = 64
ROW_GAP = 18
PAD = 12


@dataclass(frozen=True)
class Node:
    step_id: str
    x: int
    y: int
    status: str

    @property
    def cx(self) -> int:
        return self.x + NODE_W // 2


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str


@dataclass(frozen=True)
class GraphLayout:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def depths(deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each step's column: 0 for a root, else one more than its deepest dependency.

    ``deps`` is keyed in an order where dependencies come first (``task_sequence``, which
    :func:`agentic.graph.check_graph` guarantees); a dependency it does not name is ignored.
    """
    found: dict[str, int] = {}
    for step, waits_for in deps.items():
        found[step] = 1 + max((found[d] for d in waits_for if d in found), default=-1)
    return found


def graph_layout(deps: Mapping[str, Sequence[str]], statuses: Mapping[str, str]) -> GraphLayout:
    """Nodes in columns by depth (in ``deps`` order within a column) and their edges."""
    columns: dict[int, list[str]] = {}
    for step, depth in depths(deps).items():
        columns.setdefault(depth, []).append(step)
    nodes: dict[str, Node] = {}
    for depth, steps in columns.items():
        for row, step in enumerate(steps):
            x = PAD + depth * (NODE_W + COL_GAP)
            y = PAD + row * (NODE_H + ROW_GAP)
            nodes[step] = Node(step, x, y, statuses.get(step, "pending"))
    edges: list[Edge] = []
    for step, waits_for in deps.items():
        for dep in waits_for:
            if dep in nodes and step in nodes:
                edges.append(Edge(dep, step, _curve(nodes[dep], nodes[step])))
    rows = max((len(s) for s in columns.values()), default=0)
    width = PAD * 2 + len(columns) * NODE_W + max(len(columns) - 1, 0) * COL_GAP
    height = PAD * 2 + rows * NODE_H + max(rows - 1, 0) * ROW_GAP
    return GraphLayout(list(nodes.values()), edges, max(width, 200), max(height, 60))


def _curve(a: Node, b: Node) -> str:
    x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
    x2, y2 = b.x, b.y + NODE_H // 2
    mid = (x1 + x2) // 2
    return f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 6},{y2}"


LABEL_W = 150
BAR_H = 16
ROW_H = 24
AXIS_W = 640


@dataclass(frozen=True)
class Bar:
    step_id: str
    attempt: int
    status: str
    x: float
    width: float
    y: int
    title: str


@dataclass(frozen=True)
class Timeline:
    rows: list[tuple[str, int]]  # step id, y of its row
    bars: list[Bar]
    width: int
    height: int
    span_s: float
    label_w: int = LABEL_W
    bar_h: int = BAR_H


def timeline(
    order: Sequence[str],
    attempts: Mapping[str, Sequence[StepResult]],
    *,
    start: datetime,
    now: datetime,
) -> Timeline:
    """A bar per attempt of each step of ``order``, scaled to the run's span."""
    times = [
        t
        for step in order
        for a in attempts.get(step, ())
        for t in (a.timing.finished_at, a.timing.started_at)
        if t is not None
    ]
    end = max([now if not times else max(times), start])
    span = max((end - start).total_seconds(), 0.001)
    rows: list[tuple[str, int]] = []
    bars: list[Bar] = []
    for i, step in enumerate(order):
        y = 4 + i * ROW_H
        rows.append((step, y))
        for a in attempts.get(step, ()):
            began = a.timing.queued_at or a.timing.started_at
            if began is None or a.reused_from is not None:
                continue
            ended = a.timing.finished_at or now
            x0 = max((began - start).total_seconds(), 0.0) / span * AXIS_W
            x1 = max((ended - start).total_seconds(), 0.0) / span * AXIS_W
            took = a.timing.duration_s
            title = f"{step} attempt {a.attempt}: {a.status}" + (
                f", {took:.2f} s" if took is not None else ""
            )
            bars.append(Bar(step, a.attempt, a.status, LABEL_W + x0, max(x1 - x0, 2.0), y, title))
    height = 8 + len(order) * ROW_H + 16
    return Timeline(rows, bars, LABEL_W + AXIS_W + 8, height, span)
