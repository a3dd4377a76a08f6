"""Fixtures of the training integration tests: one platform per module (the API on a real
port, a scheduler and a worker as processes, real PostgreSQL and Redis), three data sets
ingested and an iris model trained and evaluated by a real job; and task contexts whose API is
that platform, to call ``run_train`` / ``run_evaluate`` directly with that job's token."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import polars as pl
import pytest
import redis
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.conftest import REDIS_URL, _started, make_settings
from tests.integration.workflows.engine import (
    Engine,
    Steps,
    client,
    engine_env,
    serve,
    tasks_by_name,
)
from tests.integration.workflows.test_pipelines import upload
from tests.ports import free_port

from armillary.app import create_app
from armillary.contracts.tasks import TaskContext

# Loaded once by the fork server, so each attempt of these tests does not import them again.
PRELOAD = [
    "numpy",
    "polars",
    "httpx",
    "armillary.data.tasks",
    "armillary.training.tasks",
    "sklearn.ensemble",
    "skl2onnx",
]

SEED_WORKFLOW = {
    "name": "training-seed",
    "tasks": [
        {"name": "iris", "type": "ingest", "params": {"dataset": "iris", "version": 1}},
        {"name": "diabetes", "type": "ingest", "params": {"dataset": "diabetes", "version": 1}},
        {"name": "cancer", "type": "ingest", "params": {"dataset": "cancer", "version": 1}},
        {
            "name": "fit",
            "type": "train",
            "params": {
                "input": "iris",
                "target": "species",
                "estimator": "RandomForestClassifier",
                "hyperparameters": {"n_estimators": 20},
            },
            "needs": ["iris"],
        },
        {
            "name": "check",
            "type": "evaluate",
            "params": {"model": "fit", "thresholds": {"accuracy": {"min": 0.7}}},
            "needs": ["fit"],
        },
        # Keeps the seed job running while the module's tests call task code directly: a job
        # token stops working when its job ends.
        {
            "name": "hold",
            "type": "sleep",
            "params": {"seconds": 1800},
            "needs": ["check", "diabetes", "cancer"],
            "timeout_seconds": 3600,
        },
    ],
}


@dataclass
class Stage:
    steps: Steps
    base_url: str
    token: str  # the user's
    job_token: str  # the seed job's
    project: str
    project_id: str
    job: dict[str, Any]
    outputs: dict[str, dict[str, Any]]
    root: Path

    def context(self, task: str | None = None) -> TaskContext:
        """A context for a direct call, as the worker would build it for the seed job."""
        name = task or f"direct-{uuid.uuid4().hex[:8]}"
        work = self.root / name
        return TaskContext(
            job_id=str(self.job["id"]),
            project_id=self.project_id,
            task=name,
            attempt_id=uuid.uuid4().hex,
            workdir=work,
            artifacts_dir=work / "artifacts",
            api_url=self.base_url,
            _token=self.job_token,
        )


def _csvs(directory: Path) -> dict[str, Path]:
    iris = load_iris()
    frame = pl.DataFrame(
        iris.data, schema=[n[:-5].replace(" ", "_") for n in iris.feature_names], orient="row"
    )
    species = np.asarray(iris.target_names)[iris.target]
    frames = {"iris": frame.with_columns(pl.Series("species", [str(s) for s in species]))}
    diabetes = load_diabetes()
    frames["diabetes"] = pl.DataFrame(
        diabetes.data, schema=list(diabetes.feature_names), orient="row"
    ).with_columns(pl.Series("progression", diabetes.target))
    cancer = load_breast_cancer()
    names = [n.replace(" ", "_") for n in cancer.feature_names]
    frames["cancer"] = pl.DataFrame(cancer.data, schema=names, orient="row").with_columns(
        pl.Series("malignant", 1 - cancer.target)
    )
    paths = {}
    for name, frame in frames.items():
        paths[name] = directory / f"{name}.csv"
        frame.write_csv(paths[name])
    return paths


@pytest.fixture(scope="module")
async def stage(
    pg_url: str, truncate_sql: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stage]:
    engine_db = create_async_engine(pg_url)
    async with engine_db.begin() as conn:
        await conn.execute(text(truncate_sql))
    await engine_db.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()
    root = tmp_path_factory.mktemp("training")
    settings = make_settings(root / "home", database_url=pg_url, redis_url=REDIS_URL)
    app = create_app(settings, configure_logs=False)
    async for started in _started(app):
        async for base_url in serve(started, free_port()):
            logs = root / "logs"
            logs.mkdir()
            env = engine_env(
                settings,
                base_url,
                ARMILLARY_WORKFLOWS_TASK_MEMORY_MB="4096",
                # The ML libraries load once in the fork server, not in every task.
                ARMILLARY_WORKFLOWS_EXECUTOR_PRELOAD=json.dumps(PRELOAD),
            )
            engine = Engine(settings, base_url, logs, env)
            engine.start("scheduler", "scheduler")
            engine.start("worker", "worker")
            try:
                async with client(base_url) as http:
                    yield await _seed(started, Steps(http), base_url, root)
            finally:
                engine.stop_all()


async def _seed(app: Any, steps: Steps, base_url: str, root: Path) -> Stage:
    admin = await steps.admin_token()
    user = await steps.create_user(admin, "data_scientist")
    token = user["token"]
    project = await steps.create_project(token)
    for name, path in _csvs(root).items():
        await upload(steps, token, project["slug"], name, path)
    await steps.workflow(token, project["slug"], SEED_WORKFLOW)
    job = await steps.run(token, project["slug"], "training-seed")
    await steps.wait_task(token, job["id"], "hold", "running", timeout=180)
    done = await steps.job(token, job["id"])
    runs = {n: r for n, r in tasks_by_name(done).items() if n != "hold"}
    failures = {n: r["error"] for n, r in runs.items() if r["status"] != "succeeded"}
    assert not failures, failures
    directory = app.state.runtime.require_access().directory
    issued = await directory.issue_job_token(
        user_id=UUID(str(user["id"])),
        project_id=UUID(str(project["id"])),
        job_id=UUID(str(done["id"])),
        ttl_seconds=3600,
    )
    return Stage(
        steps=steps,
        base_url=base_url,
        token=token,
        job_token=issued.token,
        project=project["slug"],
        project_id=str(project["id"]),
        job=done,
        outputs={name: run["outputs"] for name, run in runs.items()},
        root=root,
    )
