"""Where a model version came from: its job, the workflow version the job ran, and the dataset
versions its ``ingest`` tasks read upstream of the training (and evaluation) task."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from armillary.kit.errors import Conflict, Unprocessable
from armillary.kit.ids import parse_uuid

from ..components import DatasetLookup

INGEST = "ingest"


@dataclass(frozen=True, slots=True)
class DatasetNeed:
    name: str
    version: int
    role: str  # "training" | "evaluation"


@dataclass(frozen=True, slots=True)
class ResolvedDataset:
    dataset_id: uuid.UUID
    name: str
    version: int
    version_id: uuid.UUID | None
    sha256: str
    role: str

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset_id": str(self.dataset_id),
            "dataset": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "role": self.role,
        }


@dataclass(frozen=True, slots=True)
class JobPlan:
    workflow: dict[str, Any]
    datasets: list[DatasetNeed]


def upstream(tasks: dict[str, dict[str, Any]], start: str) -> set[str]:
    """Every task ``start`` depends on, transitively through ``needs`` (not ``start``)."""
    seen: set[str] = set()
    queue = deque(tasks.get(start, {}).get("needs") or [])
    while queue:
        name = queue.popleft()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        queue.extend(tasks[name].get("needs") or [])
    return seen


def _ingested(tasks: dict[str, dict[str, Any]], names: set[str]) -> list[tuple[str, int]]:
    found = []
    for name in sorted(names):
        task = tasks[name]
        outputs = task.get("outputs") or {}
        dataset = outputs.get("dataset") if isinstance(outputs, dict) else None
        if task.get("type") != INGEST or not isinstance(dataset, dict):
            continue
        version = dataset.get("version")
        if not isinstance(dataset.get("name"), str) or not isinstance(version, int):
            raise Unprocessable(f"Task {name!r} reports its dataset in an unknown shape")
        found.append((dataset["name"], version))
    return found


def plan(job: dict[str, Any], task: str, evaluation_task: str | None) -> JobPlan:
    """What to record from the caller's job; 422 when a named task is not in it."""
    tasks = {t["name"]: t for t in job.get("tasks") or [] if isinstance(t, dict) and "name" in t}
    for name in filter(None, (task, evaluation_task)):
        if name not in tasks:
            raise Unprocessable(f"The job has no task {name!r}")
    needs: dict[tuple[str, int], DatasetNeed] = {}
    for name, version in _ingested(tasks, upstream(tasks, task)):
        needs[(name, version)] = DatasetNeed(name, version, "training")
    if evaluation_task is not None:
        for name, version in _ingested(tasks, upstream(tasks, evaluation_task)):
            needs.setdefault((name, version), DatasetNeed(name, version, "evaluation"))
    workflow = {
        "id": job.get("workflow_id"),
        "name": job.get("workflow"),
        "version": job.get("version"),
    }
    return JobPlan(workflow, list(needs.values()))


async def resolve(
    lookup: DatasetLookup, token: str, project: str, needs: list[DatasetNeed]
) -> list[ResolvedDataset]:
    """Each dataset version's id and SHA-256 from the data service; a version it does not know
    (deleted meanwhile, or never there) refuses the registration (409), never skipped."""
    resolved = []
    for need in needs:
        answer = await lookup.dataset_version(token, project, need.name, need.version)
        dataset_id = parse_uuid(str((answer or {}).get("dataset_id", "")))
        sha256 = (answer or {}).get("sha256")
        if answer is None or dataset_id is None or not isinstance(sha256, str):
            raise Conflict(
                f"Dataset {need.name!r} version {need.version}, read by this job, cannot be "
                "found: its lineage cannot be recorded"
            )
        resolved.append(
            ResolvedDataset(
                dataset_id,
                need.name,
                need.version,
                parse_uuid(str(answer.get("id", ""))),
                sha256,
                need.role,
            )
        )
    return resolved
