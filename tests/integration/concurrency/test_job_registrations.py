"""The exact scene of issue 12, run for real: one workflow job whose three `register` tasks
register versions of the same model at once, on the embedded SQLite shape and on PostgreSQL.

The API (with the scheduler, as `armillary up` runs it) is served on a real port in the test's
event loop; one `armillary worker` process runs the register tasks all at once, so their
registrations reach the registry together. Every register task must succeed with a number of
its own, every version's model file must download intact and predict behind a deployment, and
the store must hold exactly what the committed rows point at. Two more register tasks of the
first training race its own: they succeed with its version (one job registers one set of
artifacts once), rather than being told to retry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi import FastAPI
from sklearn.datasets import load_iris
from tests.conftest import _started, auth
from tests.integration.concurrency.support import assert_rows_and_objects_agree
from tests.integration.registry.support import sha256
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
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings

pytestmark = pytest.mark.slow

#: Register tasks racing in the one job (the issue saw the loss with three, and with two).
REGISTRATIONS = 3
#: More register tasks of the first training's model, racing its own register task: a job
#: registers one set of artifacts once, so these answer with that task's version.
TWINS = 2
TRAININGS = [f"train-{i}" for i in range(1, REGISTRATIONS + 1)]
MODEL = "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# Loaded once by the worker's fork server, not by every attempt.
PRELOAD = ["numpy", "polars", "httpx", "armillary.data.tasks", "armillary.training.tasks"]


def iris_csv(path: Path) -> Path:
    iris = load_iris()
    frame = pl.DataFrame(iris.data, schema=FEATURES, orient="row")
    frame.with_columns(pl.Series("species", iris.target.astype(np.int64))).write_csv(path)
    return path


def racing_registrations() -> dict[str, Any]:
    """Three small trainings on one ingested table, each registered by its own task as the
    next version of the same model, and the first one's registered again by its twins. The
    register tasks need every training: they become ready, and are taken, together."""
    tasks: list[dict[str, Any]] = [
        {"name": "load", "type": "ingest", "params": {"dataset": "iris", "version": 1}}
    ]
    for i in range(1, REGISTRATIONS + 1):
        tasks += [
            {
                "name": f"train-{i}",
                "type": "train",
                "needs": ["load"],
                "params": {
                    "input": "load",
                    "target": "species",
                    "estimator": "DecisionTreeClassifier",
                    "hyperparameters": {"max_depth": 3, "random_state": i},
                    "validation": {"method": "holdout", "test_size": 0.2, "seed": i},
                    "onnx": False,
                },
            },
            {
                "name": f"register-{i}",
                "type": "register",
                "needs": TRAININGS,
                "params": {"model": f"train-{i}", "name": MODEL},
            },
        ]
    tasks += [
        {
            "name": f"twin-{i}",
            "type": "register",
            "needs": TRAININGS,
            "params": {"model": "train-1", "name": MODEL},
        }
        for i in range(1, TWINS + 1)
    ]
    return {"name": "racing-registrations", "tasks": tasks}


def worker_env(settings: Settings, base_url: str) -> dict[str, str]:
    env = engine_env(
        settings,
        base_url,
        ARMILLARY_WORKFLOWS_WORKER_CONCURRENCY=str(REGISTRATIONS + TWINS),
        ARMILLARY_WORKFLOWS_EXECUTOR_PRELOAD=json.dumps(PRELOAD),
        ARMILLARY_STORAGE_BACKEND="local",
    )
    if settings.database_url is None:
        # The embedded shape: the worker opens the SQLite file under ARMILLARY_HOME.
        env.pop("ARMILLARY_DATABASE_URL")
        env.pop("ARMILLARY_REDIS_URL")
    return env


@pytest.fixture
async def embedded(
    db_settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, Engine, Steps]]:
    """The platform as `armillary up` runs it (API and scheduler in one process) on a real
    port, with one worker process."""
    app = create_app(
        db_settings,
        configure_logs=False,
        run_scheduler=True,
        storage_settings=StorageSettings(backend="local"),
    )
    async for started in _started(app):
        async for base_url in serve(started, free_port()):
            logs = tmp_path / "logs"
            logs.mkdir()
            engine = Engine(db_settings, base_url, logs, worker_env(db_settings, base_url))
            engine.start("worker", "worker")
            try:
                async with client(base_url) as http:
                    yield started, engine, Steps(http)
            finally:
                engine.stop_all()


async def _predicts(steps: Steps, token: str, project: str, version: int) -> list[Any]:
    """Deploy ``version`` alone and predict a few rows through it."""
    base = f"/api/v1/projects/{project}/deployments"
    name = f"iris-v{version}"
    body = {
        "name": name,
        "routing": {"mode": "random"},
        "variants": [{"name": "only", "model": MODEL, "version": version, "weight": 1}],
    }
    created = await steps.client.post(base, json=body, headers=auth(token))
    assert created.status_code == 201, created.text
    key = await steps.client.post(f"{base}/{name}/keys", json={"name": "t"}, headers=auth(token))
    assert key.status_code == 201, key.text
    rows = [dict(zip(FEATURES, map(float, r), strict=True)) for r in load_iris().data[::50]]
    answer = await steps.client.post(
        f"{base}/{name}/predict",
        json={"instances": rows},
        headers={"X-API-Key": key.json()["key"]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    return list(answer.json()["predictions"])


async def test_register_tasks_of_one_job_at_once_keep_their_numbers_and_files(
    embedded: tuple[FastAPI, Engine, Steps], tmp_path: Path
) -> None:
    app, engine, steps = embedded
    admin = await steps.admin_token()
    user = await steps.create_user(admin, "data_scientist")
    token, project = user["token"], (await steps.create_project(user["token"]))["slug"]
    await upload(steps, token, project, "iris", iris_csv(tmp_path / "iris.csv"))
    await steps.workflow(token, project, racing_registrations())

    job = await steps.run(token, project, "racing-registrations")
    done = await steps.wait(token, job["id"], timeout=240)

    runs = tasks_by_name(done)
    assert done["status"] == "succeeded", (
        {n: (r["status"], r["error"]) for n, r in runs.items()},
        engine.output("worker")[-3000:],
    )
    registers = [runs[f"register-{i}"] for i in range(1, REGISTRATIONS + 1)]
    twins = [runs[f"twin-{i}"] for i in range(1, TWINS + 1)]
    # They ran at once: each started before any of them had finished.
    racing = registers + twins
    assert max(r["started_at"] for r in racing) < min(r["finished_at"] for r in racing)
    numbers = sorted(r["outputs"]["version"] for r in registers)
    assert numbers == list(range(1, REGISTRATIONS + 1))
    for twin in twins:
        assert twin["outputs"] == registers[0]["outputs"]

    models = f"/api/v1/projects/{project}/models/{MODEL}"
    for run in registers:
        number = run["outputs"]["version"]
        found = await steps.client.get(f"{models}/versions/{number}", headers=auth(token))
        version = found.json()
        assert version["id"] == run["outputs"]["model_version_id"]
        assert version["lineage"]["task"] == run["name"].replace("register", "train")
        blob = await steps.client.get(
            f"{models}/versions/{number}/artifacts/model.skops", headers=auth(token)
        )
        assert blob.status_code == 200, blob.text
        assert sha256(blob.content) == version["artifacts"]["model.skops"]["sha256"]
        predictions = await _predicts(steps, token, project, number)
        assert predictions == [0, 1, 2]
    await assert_rows_and_objects_agree(app, under="/models/")
