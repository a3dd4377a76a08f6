"""Helpers for the registry tests: a training job's artifacts and its record, problem checks."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from tests.conftest import Api, auth
from tests.integration.registry.models_for_tests import (
    ENVIRONMENT,
    SIGNATURE,
    json_bytes,
    onnx_bytes,
    skops_bytes,
)

from armillary.kit.storage import attempt_artifact_key
from armillary.registry.components import Registry, registry_of


class FakeJobs:
    """The workflows service's ``GET /api/v1/jobs/{id}``, for jobs the test declares."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    async def job(self, token: str, job_id: str) -> dict[str, Any] | None:
        self.calls.append(job_id)
        return self.jobs.get(job_id)


@dataclass
class Platform:
    app: FastAPI
    client: httpx.AsyncClient
    jobs: FakeJobs
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.client)

    @property
    def registry(self) -> Registry:
        return registry_of(self.app.state.runtime)


@dataclass
class Scene:
    """A data scientist's project with a registered model and a dataset version."""

    platform: Platform
    user: dict[str, Any]
    project: dict[str, Any]
    model: str = "churn"

    @property
    def token(self) -> str:
        return str(self.user["token"])

    @property
    def client(self) -> httpx.AsyncClient:
        return self.platform.client

    @property
    def base(self) -> str:
        return f"/api/v1/projects/{self.project['slug']}/models"

    @property
    def model_base(self) -> str:
        return f"{self.base}/{self.model}"

    async def job_token(self, job_id: uuid.UUID) -> str:
        directory = self.platform.app.state.runtime.access.directory
        issued = await directory.issue_job_token(
            user_id=uuid.UUID(self.user["id"]),
            project_id=uuid.UUID(self.project["id"]),
            job_id=job_id,
            ttl_seconds=600,
            task_type="register",  # what the register task's token holds (aliases included)
        )
        return str(issued.token)

    async def put_job_artifact(
        self, job_id: uuid.UUID, task: str, name: str, data: bytes, attempt: int = 1
    ) -> str:
        """Write a file as the worker does for the attempt; returns its key (which the job's
        task run records once the attempt succeeded)."""
        key = attempt_artifact_key(uuid.UUID(self.project["id"]), job_id, task, attempt, name)
        await self.platform.registry.store.put_bytes(key, data)
        return key

    async def upload_dataset(
        self, name: str, content: bytes, token: str | None = None, lineage: str | None = None
    ) -> dict[str, Any]:
        base = f"/api/v1/projects/{self.project['slug']}/datasets"
        created = await self.client.post(base, json={"name": name}, headers=auth(self.token))
        assert created.status_code in (201, 409), created.text
        data = {"lineage": lineage} if lineage else {}
        response = await self.client.post(
            f"{base}/{name}/versions",
            files={"file": (f"{name}.csv", content, "text/csv")},
            data=data,
            headers=auth(token or self.token),
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def member(self, role: str) -> dict[str, Any]:
        api = self.platform.api
        user = await api.create_user(await api.admin_token(), "data_scientist")
        response = await self.client.put(
            f"/api/v1/projects/{self.project['slug']}/members/{user['id']}",
            json={"role": role},
            headers=auth(self.token),
        )
        assert response.status_code == 200, response.text
        return user


PROBLEM = "application/problem+json"
CSV = b"f0,f1,f2,label\n0.1,0.2,0.3,0\n0.9,0.8,0.7,1\n"
CSV_TEST = b"f0,f1,f2,label\n0.2,0.2,0.2,0\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem with ``status``, a title and a detail, and no internals."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = dict(response.json())
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"].startswith("https://")
    for leak in ("Traceback", 'File "', "SELECT ", "/tmp"):
        assert leak not in response.text, response.text
    # No object key (projects/<uuid>/...) ever reaches a client.
    assert not re.search(r"projects/[0-9a-f]{8}-", response.text), response.text
    return body


def job_record(
    job_id: uuid.UUID,
    *,
    train_reads: tuple[str, int] | None = ("iris", 1),
    evaluate_reads: tuple[str, int] | None = ("iris-test", 1),
) -> dict[str, Any]:
    """``GET /api/v1/jobs/{id}`` of a job load -> prep -> train -> evaluate (+ holdout), with
    an unrelated ingest that must not count."""

    def ingest(name: str, reads: tuple[str, int] | None) -> dict[str, Any]:
        outputs = {"rows": 2, "sha256": "0" * 64}
        if reads is not None:
            outputs["dataset"] = {"name": reads[0], "version": reads[1]}
        return {"name": name, "type": "ingest", "needs": [], "outputs": outputs}

    return {
        "id": str(job_id),
        "workflow": "train-churn",
        "workflow_id": "7d3c2f1e-0000-4000-8000-000000000001",
        "version": 3,
        "status": "running",
        "tasks": [
            ingest("load", train_reads),
            {"name": "prep", "type": "transform", "needs": ["load"], "outputs": {}},
            {"name": "train", "type": "train", "needs": ["prep"], "outputs": {}},
            ingest("holdout", evaluate_reads),
            {"name": "evaluate", "type": "evaluate", "needs": ["train", "holdout"]},
            ingest("unrelated", ("other", 1)),
            {"name": "register", "type": "register", "needs": ["train", "evaluate"]},
        ],
    }


ARTIFACTS = ["model.skops", "model.onnx", "signature.json", "environment.json"]


async def training_job(
    scene: Scene,
    *,
    files: dict[str, bytes] | None = None,
    train_reads: tuple[str, int] = ("iris", 1),
) -> tuple[uuid.UUID, str]:
    """A job of the scene's user with a ``train`` task's artifacts in the store."""
    job_id = uuid.uuid4()
    files = files if files is not None else default_files()
    recorded = {
        name: await scene.put_job_artifact(job_id, "train", name, data)
        for name, data in files.items()
    }
    record = job_record(job_id, train_reads=train_reads)
    train = next(task for task in record["tasks"] if task["name"] == "train")
    train["artifacts"] = recorded
    scene.platform.jobs.jobs[str(job_id)] = record
    return job_id, await scene.job_token(job_id)


def default_files() -> dict[str, bytes]:
    return {
        "model.skops": skops_bytes(),
        "model.onnx": onnx_bytes(),
        "signature.json": json_bytes(SIGNATURE),
        "environment.json": json_bytes(ENVIRONMENT),
    }


def version_body(
    *,
    artifacts: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    params: dict[str, Any] | None = None,
    evaluation_task: str | None = "evaluate",
) -> dict[str, Any]:
    return {
        "source": {"task": "train", "artifacts": artifacts or ARTIFACTS},
        "metrics": metrics if metrics is not None else {"f1": 0.8, "accuracy": 0.9},
        "params": params if params is not None else {"C": 1.0},
        "estimator": "LogisticRegression",
        "problem": "classification",
        "format": "skops",
        "description": "first",
        "tags": {"stage": "dev"},
        "evaluation_task": evaluation_task,
    }


async def with_datasets(scene: Scene) -> dict[str, dict[str, Any]]:
    """The dataset versions the default job reads."""
    return {
        "iris": await scene.upload_dataset("iris", CSV),
        "iris-test": await scene.upload_dataset("iris-test", CSV_TEST),
    }


async def register(
    scene: Scene, *, body: dict[str, Any] | None = None, files: dict[str, bytes] | None = None
) -> dict[str, Any]:
    """A version registered by a fresh training job (the datasets must exist)."""
    _, token = await training_job(scene, files=files)
    response = await scene.client.post(
        f"{scene.model_base}/versions",
        json=body or version_body(),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())
