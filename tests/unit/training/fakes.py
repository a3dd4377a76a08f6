"""A stand-in of the platform API for the training tasks' unit tests (``httpx.MockTransport``):
job artifacts by reference, progress reports, registry aliases and model-version artifacts.
Integration tests use the real API instead."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from armillary.contracts.tasks import TaskContext

API = "http://api.test"
TOKEN = "job-token-" + "t" * 40
PROJECT = "project-1"
JOB = "job-1"


class FakePlatform:
    def __init__(self, *, progress_status: int = 204) -> None:
        self.artifacts: dict[tuple[str, str, str], bytes] = {}
        self.progress: list[dict[str, Any]] = []
        self.progress_status = progress_status
        self.aliases: dict[tuple[str, str], dict[str, Any]] = {}
        self.model_files: dict[tuple[str, int, str], bytes] = {}
        self.versions: dict[tuple[str, int], dict[str, Any]] = {}
        # The paths of every call to the tracking service's MLflow API (none answered).
        self.tracking_calls: list[str] = []
        # What the worker answers to a worker call: the upload -> (info, file) or a problem.
        self.worker_calls: dict[str, Callable[[bytes], tuple[dict[str, Any], bytes] | str]] = {}

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def context(self, tmp: Path, task: str) -> TaskContext:
        work = tmp / f"work-{task}-{uuid.uuid4().hex[:6]}"
        return TaskContext(
            job_id=JOB,
            project_id=PROJECT,
            task=task,
            attempt_id=uuid.uuid4().hex,
            workdir=work,
            artifacts_dir=work / "artifacts",
            api_url=API,
            _token=TOKEN,
        )

    def add_table(self, task: str, frame: pl.DataFrame, tmp: Path) -> dict[str, Any]:
        """An upstream data task's outputs whose table is ``frame``."""
        path = tmp / f"{task}.parquet"
        frame.write_parquet(path)
        data = path.read_bytes()
        self.artifacts[(JOB, task, "table.parquet")] = data
        return {
            "table": {"job_id": JOB, "task": task, "name": "table.parquet"},
            "sha256": hashlib.sha256(data).hexdigest(),
            "rows": frame.height,
            "dataset": {"name": "source", "version": 3},
        }

    def upload(self, context: TaskContext) -> None:
        """What the worker does after a task succeeds."""
        for path in context.artifacts_dir.iterdir():
            self.artifacts[(context.job_id, context.task, path.name)] = path.read_bytes()

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers.get("authorization") == f"Bearer {TOKEN}"
        path = request.url.path
        if path.startswith("/mlflow/"):
            self.tracking_calls.append(path)
            return _problem(503, "tracking is down")
        if found := re.fullmatch(r"/_worker/([^/]+)", path):
            answer = self.worker_calls[found[1]](request.read())
            if isinstance(answer, str):
                return _problem(422, answer)
            info, content = answer
            return httpx.Response(
                200, content=content, headers={"x-armillary-result": json.dumps(info)}
            )
        if found := re.fullmatch(r"/api/v1/jobs/([^/]+)/tasks/([^/]+)/artifacts/([^/]+)", path):
            content = self.artifacts.get((found[1], found[2], found[3]))
            if content is None:
                return _problem(404)
            return httpx.Response(200, content=content)
        if re.fullmatch(r"/api/v1/jobs/[^/]+/tasks/[^/]+/progress", path):
            self.progress.append(json.loads(request.content))
            if self.progress_status >= 400:
                return _problem(self.progress_status)
            return httpx.Response(self.progress_status)
        base = f"/api/v1/projects/{PROJECT}/models/"
        if found := re.fullmatch(rf"{base}([^/]+)/aliases/([^/]+)", path):
            alias = self.aliases.get((found[1], found[2]))
            return httpx.Response(200, json=alias) if alias else _problem(404)
        if found := re.fullmatch(rf"{base}([^/]+)/versions/(\d+)", path):
            record = self.versions.get((found[1], int(found[2])))
            return httpx.Response(200, json=record) if record else _problem(404)
        if found := re.fullmatch(rf"{base}([^/]+)/versions/(\d+)/artifacts/([^/]+)", path):
            content = self.model_files.get((found[1], int(found[2]), found[3]))
            return httpx.Response(200, content=content) if content else _problem(404)
        return _problem(404)


def _problem(status: int, detail: str = "no") -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": "about:blank", "title": "Problem", "status": status, "detail": detail},
        headers={"Content-Type": "application/problem+json"},
    )
