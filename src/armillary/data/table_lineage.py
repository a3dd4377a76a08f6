"""The lineage ``write_dataset`` records with the version it writes: the job, the workflow
version it ran, the task, and the dataset versions that ``ingest`` tasks read upstream of it,
each with its ids and SHA-256: the shape a model version's lineage has.

The task asks its job (through the task API) rather than trusting what reached it, since a
``transform`` or ``validate`` in between passes no dataset along.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from armillary.contracts.tasks import TaskContext
from armillary.sdk.task_api import TaskApi, TaskApiError

INGEST = "ingest"

Tasks = Mapping[str, Mapping[str, Any]]


class LineageUnavailable(Exception):
    """A dataset version read upstream cannot be found, so the lineage would be a lie."""


def tasks_of(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The job's task runs by name."""
    runs = job.get("tasks") or []
    return {
        str(run["name"]): run
        for run in runs
        if isinstance(run, Mapping) and isinstance(run.get("name"), str)
    }


def upstream(tasks: Tasks, start: str) -> list[str]:
    """``start`` and every task it depends on, transitively through ``needs``."""
    seen: list[str] = []
    queue = deque([start])
    while queue:
        name = queue.popleft()
        if name in seen or name not in tasks:
            continue
        seen.append(name)
        queue.extend(str(need) for need in tasks[name].get("needs") or [])
    return seen


def ingested(tasks: Tasks, names: list[str]) -> list[tuple[str, str, int]]:
    """``(task, dataset, version)`` for each distinct dataset version the ``ingest`` tasks
    among ``names`` read, in task-name order."""
    found: dict[tuple[str, int], str] = {}
    for name in sorted(names):
        task = tasks[name]
        outputs = task.get("outputs")
        dataset = outputs.get("dataset") if isinstance(outputs, Mapping) else None
        if task.get("type") != INGEST or not isinstance(dataset, Mapping):
            continue  # an ingest of a URL or an s3:// object reads no dataset version
        version = dataset.get("version")
        if isinstance(dataset.get("name"), str) and isinstance(version, int):
            found.setdefault((dataset["name"], version), name)
    return [(task, dataset, version) for (dataset, version), task in found.items()]


def table_lineage(api: TaskApi, context: TaskContext, input_task: str) -> dict[str, Any]:
    """The lineage of the table ``input_task`` produced, as this task writes it."""
    job = api.job()
    tasks = tasks_of(job)
    datasets = []
    for task, dataset, version in ingested(tasks, upstream(tasks, input_task)):
        try:
            record = api.dataset_version(dataset, version)
        except TaskApiError as exc:
            if exc.status != 404:
                raise
            raise LineageUnavailable(
                f"dataset {dataset!r} version {version}, read by task {task!r}, cannot be "
                "found: the lineage of the new version cannot be recorded"
            ) from None
        datasets.append(
            {
                "dataset_id": str(record["dataset_id"]),
                "dataset": dataset,
                "version": version,
                "version_id": str(record["id"]),
                "sha256": str(record["sha256"]),
                "task": task,
            }
        )
    return {
        "job_id": context.job_id,
        "task": context.task,
        "workflow": {
            "id": job.get("workflow_id"),
            "name": job.get("workflow"),
            "version": job.get("version"),
        },
        "inputs": [input_task],
        "datasets": datasets,
    }
