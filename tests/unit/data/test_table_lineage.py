"""The lineage ``write_dataset`` records: only the dataset versions read upstream of its input
(through any number of tasks), each once; a source version that cannot be found refuses the
write rather than recording a lineage that leaves it out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from armillary.contracts.tasks import TaskContext
from armillary.data.table_lineage import LineageUnavailable, table_lineage
from armillary.sdk.task_api import TaskApiError


def _ingest(name: str, dataset: str | None, version: int = 1) -> dict[str, Any]:
    outputs = {"dataset": {"name": dataset, "version": version}} if dataset else {"rows": 1}
    return {"name": name, "type": "ingest", "needs": [], "outputs": outputs}


def _task(name: str, kind: str, needs: list[str]) -> dict[str, Any]:
    return {"name": name, "type": kind, "needs": needs, "outputs": {"rows": 1}}


JOB = {
    "workflow": "flow",
    "workflow_id": "w-1",
    "version": 2,
    "tasks": [
        _ingest("a", "sales", 4),
        _ingest("b", "sales", 4),  # the same version read twice: listed once
        _ingest("web", None),  # a URL: no dataset version
        _ingest("elsewhere", "unrelated"),  # not upstream of the input
        _task("joined", "transform", ["a", "b", "web"]),
        _task("checked", "validate", ["joined"]),
        _task("save", "write_dataset", ["checked"]),
        _task("other", "transform", ["elsewhere"]),
    ],
}


class StubApi:
    def __init__(self, missing: frozenset[tuple[str, int]] = frozenset()) -> None:
        self.missing = missing

    def job(self) -> dict[str, Any]:
        return JOB

    def dataset_version(self, dataset: str, version: int) -> dict[str, Any]:
        if (dataset, version) in self.missing:
            raise TaskApiError(404, "Version not found")
        return {"id": f"v-{dataset}-{version}", "dataset_id": f"d-{dataset}", "sha256": "ab" * 32}


def _context(tmp_path: Path) -> TaskContext:
    return TaskContext(
        job_id="job-1",
        project_id="p-1",
        task="save",
        attempt_id="att-1",
        workdir=tmp_path,
        artifacts_dir=tmp_path / "artifacts",
        api_url="http://api.test",
    )


def test_only_upstream_dataset_versions_are_named_once(tmp_path: Path) -> None:
    lineage = table_lineage(StubApi(), _context(tmp_path), "checked")  # type: ignore[arg-type]
    assert lineage == {
        "job_id": "job-1",
        "task": "save",
        "workflow": {"id": "w-1", "name": "flow", "version": 2},
        "inputs": ["checked"],
        "datasets": [
            {
                "dataset_id": "d-sales",
                "dataset": "sales",
                "version": 4,
                "version_id": "v-sales-4",
                "sha256": "ab" * 32,
                "task": "a",
            }
        ],
    }


def test_a_source_version_that_is_gone_refuses_the_lineage(tmp_path: Path) -> None:
    api = StubApi(missing=frozenset({("sales", 4)}))
    with pytest.raises(LineageUnavailable, match="'sales' version 4, read by task 'a'"):
        table_lineage(api, _context(tmp_path), "checked")  # type: ignore[arg-type]
