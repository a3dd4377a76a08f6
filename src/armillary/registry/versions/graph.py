"""A model version's lineage as a graph: model version <- job <- workflow version, and the
dataset versions it used <- what each of those came from (one level, from the data service)."""

from __future__ import annotations

from typing import Any

from ..catalog.models import RegisteredModel
from ..components import DatasetLookup
from .models import ModelVersion, VersionDataset
from .schemas import LineageEdge, LineageGraph, LineageNode

_RELATION = {"training": "trained_on", "evaluation": "evaluated_on"}


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, LineageNode] = {}
        self.edges: list[LineageEdge] = []

    def node(self, node_id: str, kind: str, **attrs: Any) -> str:
        if node_id not in self.nodes:
            self.nodes[node_id] = LineageNode(id=node_id, kind=kind, **attrs)
        return node_id

    def edge(self, source: str, target: str, relation: str) -> None:
        self.edges.append(
            LineageEdge.model_validate({"from": source, "to": target, "relation": relation})
        )


def _dataset_node_id(dataset: str, version: int) -> str:
    return f"dataset_version:{dataset}@{version}"


async def build(
    model: RegisteredModel,
    version: ModelVersion,
    datasets: list[VersionDataset],
    lookup: DatasetLookup | None,
    token: str,
    project: str,
) -> LineageGraph:
    graph = _Builder()
    lineage = version.lineage
    root = graph.node(
        f"model_version:{version.id}",
        "model_version",
        model=model.name,
        version=version.number,
        source=version.source,
    )
    job_node = None
    if lineage.get("job_id"):
        job_node = graph.node(
            f"job:{lineage['job_id']}", "job", job_id=lineage["job_id"], task=lineage.get("task")
        )
        graph.edge(root, job_node, "produced_by")
        workflow = lineage.get("workflow") or {}
        if workflow.get("id"):
            flow = graph.node(
                f"workflow_version:{workflow['id']}@{workflow.get('version')}",
                "workflow_version",
                workflow_id=workflow["id"],
                workflow=workflow.get("name"),
                version=workflow.get("version"),
            )
            graph.edge(job_node, flow, "ran")
    for used in datasets:
        node = graph.node(
            _dataset_node_id(used.dataset_name, used.dataset_version),
            "dataset_version",
            dataset=used.dataset_name,
            dataset_id=str(used.dataset_id),
            version=used.dataset_version,
            sha256=used.sha256,
        )
        graph.edge(root, node, _RELATION.get(used.role, used.role))
        if job_node is not None:
            graph.edge(job_node, node, "read")
        if lookup is not None:
            await _inputs_of(graph, node, used, lookup, token, project)
    return LineageGraph(nodes=list(graph.nodes.values()), edges=graph.edges)


async def _inputs_of(
    graph: _Builder,
    node: str,
    used: VersionDataset,
    lookup: DatasetLookup,
    token: str,
    project: str,
) -> None:
    """What one dataset version was made from, as the data service recorded it."""
    answer = await lookup.dataset_version(token, project, used.dataset_name, used.dataset_version)
    lineage = (answer or {}).get("lineage")
    if not isinstance(lineage, dict):
        return
    if lineage.get("job_id"):
        job = graph.node(
            f"job:{lineage['job_id']}", "job", job_id=lineage["job_id"], task=lineage.get("task")
        )
        graph.edge(node, job, "produced_by")
    source = lineage.get("source")
    if isinstance(source, dict) and isinstance(source.get("name"), str):
        number = source.get("version")
        if isinstance(number, int):
            found = await lookup.dataset_version(token, project, source["name"], number)
            parent = graph.node(
                _dataset_node_id(source["name"], number),
                "dataset_version",
                dataset=source["name"],
                dataset_id=(found or {}).get("dataset_id"),
                version=number,
                sha256=(found or {}).get("sha256"),
            )
            graph.edge(node, parent, "derived_from")
