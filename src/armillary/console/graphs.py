"""Pictures drawn on the server: a workflow's DAG laid out by topological layers, and small
bar charts of a column's profile. Only geometry is computed here; the templates
(``_dag.html``, ``_bars.html``) write the SVG, so every label goes through autoescape. No
JavaScript draws anything: a live fragment's redraw is the server's new SVG."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NODE_W = 150
NODE_H = 40
GAP_X = 60
GAP_Y = 20
PAD = 10
LABEL_CHARS = 18


@dataclass
class Node:
    name: str
    label: str
    state: str
    layer: int
    row: int
    x: int = 0
    y: int = 0


@dataclass
class Dag:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[int, int, int, int]] = field(default_factory=list)
    width: int = 0
    height: int = 0

    @property
    def curves(self) -> list[str]:
        """Each edge as an SVG path (a horizontal S-curve). Written here rather than by eight
        template expressions an edge, each escaped: a 200-task DAG has hundreds of edges and
        the job page redraws it at every live poll."""
        return [
            f"M {x1} {y1} C {x1 + 30} {y1}, {x2 - 30} {y2}, {x2} {y2}"
            for x1, y1, x2, y2 in self.edges
        ]


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def layers(tasks: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Each task's layer: 0 without upstream tasks, else one more than its deepest upstream.
    Unknown upstream names are ignored and a cycle (which the API refuses anyway) does not
    loop: a task on one is put after the layers already found."""
    needs = {str(t.get("name")): [str(n) for n in t.get("needs") or []] for t in tasks}
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(name: str) -> int:
        if name in depth:
            return depth[name]
        if name in visiting:
            return 0
        visiting.add(name)
        ups = [visit(n) for n in needs[name] if n in needs]
        visiting.discard(name)
        depth[name] = max(ups) + 1 if ups else 0
        return depth[name]

    for name in needs:
        visit(name)
    return depth


def dag(tasks: Iterable[Mapping[str, Any]] | None) -> Dag:
    """The layout of ``tasks`` (a spec's task list, or a job's task runs with ``status``):
    layers left to right, tasks of a layer top to bottom in the order given."""
    listed = [t for t in tasks or [] if isinstance(t, Mapping) and t.get("name")]
    if not listed:
        return Dag()
    depth = layers(listed)
    rows: dict[int, int] = {}
    graph = Dag()
    where: dict[str, Node] = {}
    for task in listed:
        name = str(task["name"])
        layer = depth[name]
        row = rows.get(layer, 0)
        rows[layer] = row + 1
        node = Node(
            name=name,
            label=_short(name),
            state=str(task.get("status") or "spec"),
            layer=layer,
            row=row,
            x=PAD + layer * (NODE_W + GAP_X),
            y=PAD + row * (NODE_H + GAP_Y),
        )
        graph.nodes.append(node)
        where[name] = node
    for task in listed:
        target = where[str(task["name"])]
        for upstream in task.get("needs") or []:
            source = where.get(str(upstream))
            if source is not None:
                graph.edges.append(
                    (
                        source.x + NODE_W,
                        source.y + NODE_H // 2,
                        target.x,
                        target.y + NODE_H // 2,
                    )
                )
    graph.width = PAD * 2 + (max(depth.values()) + 1) * (NODE_W + GAP_X) - GAP_X
    graph.height = PAD * 2 + max(rows.values()) * (NODE_H + GAP_Y) - GAP_Y
    return graph


@dataclass
class Bar:
    x: int
    y: int
    width: int
    height: int
    label: str
    count: int


@dataclass
class Bars:
    bars: list[Bar]
    width: int
    height: int
    summary: str


CHART_W = 240
CHART_H = 60


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def histogram(column: Mapping[str, Any]) -> Bars | None:
    """A numeric column's histogram (``edges``, ``counts``), or its top values: the bars of
    a small chart, each with a text label for its tooltip and the accessible table."""
    hist = column.get("histogram")
    labels: list[str] = []
    counts: list[int] = []
    if isinstance(hist, Mapping) and hist.get("counts"):
        edges = list(hist.get("edges") or [])
        counts = [int(c) for c in hist["counts"]]
        for i in range(len(counts)):
            low = _number(edges[i]) if i < len(edges) else "?"
            high = _number(edges[i + 1]) if i + 1 < len(edges) else "?"
            labels.append(f"{low} to {high}")
    elif column.get("top_values"):
        for item in column["top_values"]:
            labels.append("(null)" if item.get("value") is None else str(item.get("value")))
            counts.append(int(item.get("count") or 0))
    if not counts:
        return None
    peak = max(counts) or 1
    step = CHART_W / len(counts)
    bars = []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        height = round((CHART_H - 2) * count / peak)
        bars.append(
            Bar(
                x=round(i * step),
                y=CHART_H - height,
                width=max(round(step) - 2, 1),
                height=height,
                label=label,
                count=count,
            )
        )
    kind = "histogram" if isinstance(hist, Mapping) and hist.get("counts") else "top values"
    summary = f"{kind} of {column.get('name')}: " + ", ".join(f"{b.label}: {b.count}" for b in bars)
    return Bars(bars=bars, width=CHART_W, height=CHART_H, summary=summary)


TEMPLATE_HELPERS = {"dag_of": dag, "histogram_of": histogram}
