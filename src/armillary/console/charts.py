"""Geometry for the console's small server-side SVG charts: plain numbers the templates
draw, so a chart needs no JavaScript and the CSP no exception (no inline style: colours
come from classes in console.css)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The lineage graph reads left to right: what a model came from, the model, what uses it.
LINEAGE_COLUMNS = (
    "dataset_version",
    "workflow_version",
    "job",
    "model_version",
    "alias",
    "deployment",
)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    label: str
    value: float | None


@dataclass(frozen=True)
class MetricBars:
    metric: str
    bars: list[Bar]


def metric_bars(
    metrics: dict[str, list[float | None]], versions: list[int], width: int = 320, height: int = 90
) -> list[MetricBars]:
    """One small bar chart per metric: a bar per version, scaled to the largest magnitude of
    that metric (metrics have different units, so each gets its own scale)."""
    charts = []
    count = max(len(versions), 1)
    slot = width / count
    for name, values in metrics.items():
        peak = max((abs(v) for v in values if v is not None), default=0.0) or 1.0
        bars = []
        for index, (number, value) in enumerate(zip(versions, values, strict=False)):
            tall = 0.0 if value is None else abs(value) / peak * (height - 4)
            bars.append(
                Bar(
                    x=round(index * slot + slot * 0.15, 2),
                    y=round(height - tall, 2),
                    width=round(slot * 0.7, 2),
                    height=round(tall, 2),
                    series=index % 6,
                    label=f"v{number}",
                    value=value,
                )
            )
        charts.append(MetricBars(metric=name, bars=bars))
    return charts


@dataclass(frozen=True)
class PlacedNode:
    id: str
    kind: str
    label: str
    x: float
    y: float
    href: str | None


@dataclass(frozen=True)
class PlacedEdge:
    x1: float
    y1: float
    x2: float
    y2: float
    relation: str


@dataclass(frozen=True)
class GraphLayout:
    nodes: list[PlacedNode]
    edges: list[PlacedEdge]
    width: int
    height: int


NODE_WIDTH = 150
NODE_HEIGHT = 34
COLUMN_GAP = 40
ROW_GAP = 14


def node_label(node: dict[str, Any]) -> str:
    kind = node.get("kind")
    if kind == "model_version":
        return f"{node.get('model')} v{node.get('version')}"
    if kind == "dataset_version":
        return f"{node.get('dataset')} v{node.get('version')}"
    if kind == "workflow_version":
        return f"{node.get('workflow')} v{node.get('version')}"
    if kind == "job":
        return f"job {str(node.get('job_id', ''))[:8]}"
    return str(node.get("label") or node.get("id", ""))


def layout_lineage(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> GraphLayout:
    """Columns by kind (``LINEAGE_COLUMNS``), nodes stacked in each; an edge is a line from
    the right side of its left node to the left side of its right node."""
    columns: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        kind = node.get("kind", "")
        columns.setdefault(kind if kind in LINEAGE_COLUMNS else "deployment", []).append(node)
    used = [kind for kind in LINEAGE_COLUMNS if columns.get(kind)]
    placed: dict[str, PlacedNode] = {}
    for col, kind in enumerate(used):
        for row, node in enumerate(columns[kind]):
            placed[node["id"]] = PlacedNode(
                id=node["id"],
                kind=kind,
                label=node_label(node)[:24],
                x=col * (NODE_WIDTH + COLUMN_GAP),
                y=row * (NODE_HEIGHT + ROW_GAP),
                href=node.get("href"),
            )
    lines = []
    for edge in edges:
        a, b = placed.get(edge.get("from", "")), placed.get(edge.get("to", ""))
        if a is None or b is None:
            continue
        left, right = (a, b) if a.x <= b.x else (b, a)
        lines.append(
            PlacedEdge(
                x1=left.x + NODE_WIDTH,
                y1=left.y + NODE_HEIGHT / 2,
                x2=right.x,
                y2=right.y + NODE_HEIGHT / 2,
                relation=str(edge.get("relation", "")),
            )
        )
    rows = max((len(columns[k]) for k in used), default=1)
    return GraphLayout(
        nodes=list(placed.values()),
        edges=lines,
        width=max(len(used), 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP,
        height=rows * (NODE_HEIGHT + ROW_GAP) - ROW_GAP,
    )


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval, as x positions on a shared axis."""

    label: str
    low: float
    point: float
    high: float


def intervals(
    rows: list[tuple[str, float | None, float | None, float | None]], width: int = 300
) -> tuple[list[Interval], float, float]:
    """``(label, low, point, high)`` rows onto one axis from the smallest low to the largest
    high; rows without an estimate are left out. Returns the rows and the axis' ends."""
    known = [r for r in rows if r[1] is not None and r[2] is not None and r[3] is not None]
    if not known:
        return [], 0.0, 0.0
    lo = min(float(r[1]) for r in known if r[1] is not None)
    hi = max(float(r[3]) for r in known if r[3] is not None)
    span = (hi - lo) or 1.0

    def at(value: float) -> float:
        return round((value - lo) / span * width, 2)

    out = [
        Interval(
            label=str(r[0]),
            low=at(float(r[1] or 0)),
            point=at(float(r[2] or 0)),
            high=at(float(r[3] or 0)),
        )
        for r in known
    ]
    return out, lo, hi
