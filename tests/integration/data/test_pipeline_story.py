"""A real job (scheduler and worker processes) runs two ``ingest`` tasks, a ``validate``, a
``transform`` joining them and a ``write_dataset``: the new dataset version's lineage names the
job, the workflow version, the task and both ingested dataset versions with their SHA-256, and
every task's stored log tells what it did."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import polars as pl
import pytest
from fastapi import FastAPI
from tests.conftest import _started, auth
from tests.integration.workflows.engine import (
    Engine,
    Steps,
    client,
    engine_env,
    serve,
    tasks_by_name,
)
from tests.integration.workflows.test_pipelines import iris_csv, upload
from tests.ports import free_port

from armillary.app import create_app
from armillary.kit.settings import Settings
from armillary.sdk.task_log import size

pytestmark = pytest.mark.slow

WORKFLOW = {
    "name": "iris-by-species",
    "tasks": [
        {"name": "load", "type": "ingest", "params": {"dataset": "iris", "version": 1}},
        {"name": "names", "type": "ingest", "params": {"dataset": "species"}},
        {
            "name": "check",
            "type": "validate",
            "params": {
                "input": "load",
                "checks": [
                    {"type": "not_null", "column": "sepal_length"},
                    {"type": "row_count", "min": 100},
                ],
            },
            "needs": ["load"],
        },
        {
            "name": "joined",
            "type": "transform",
            "params": {
                "inputs": ["check", "names"],
                "sql": 'SELECT n.species, count(*) AS rows FROM "check" c JOIN names n '
                "ON c.target = n.target GROUP BY n.species ORDER BY n.species",
            },
            "needs": ["check", "names"],
        },
        {
            "name": "save",
            "type": "write_dataset",
            "params": {"input": "joined", "dataset": "iris-by-species"},
            "needs": ["joined"],
        },
    ],
}
STAGE = re.compile(r"^\[(\w+)\] stage (\w+): \d+\.\d\d s$", re.MULTILINE)


@pytest.fixture
async def engine_platform(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Engine, Steps]]:
    app: FastAPI = create_app(settings, configure_logs=False)
    async for started in _started(app):
        async for base_url in serve(started, free_port()):
            logs = tmp_path / "logs"
            logs.mkdir()
            engine = Engine(settings, base_url, logs, engine_env(settings, base_url))
            try:
                async with client(base_url) as http:
                    yield engine, Steps(http)
            finally:
                engine.stop_all()


def _stages(log: str) -> set[str]:
    return {match[2] for match in STAGE.finditer(log)}


async def test_a_derived_version_names_its_sources_and_every_task_tells_its_story(
    engine_platform: tuple[Engine, Steps], tmp_path: Path
) -> None:
    engine, steps = engine_platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    admin = await steps.admin_token()
    user = await steps.create_user(admin, "data_scientist")
    token, project = user["token"], (await steps.create_project(user["token"]))["slug"]
    iris_path = iris_csv(tmp_path / "iris.csv")
    iris = await upload(steps, token, project, "iris", iris_path)
    names_path = tmp_path / "species.csv"
    pl.DataFrame({"target": [0, 1, 2], "species": ["setosa", "versicolor", "virginica"]}).write_csv(
        names_path
    )
    species = await upload(steps, token, project, "species", names_path)
    await steps.workflow(token, project, WORKFLOW)
    job = await steps.run(token, project, "iris-by-species")
    done = await steps.wait(token, job["id"], timeout=180)
    runs = tasks_by_name(done)
    assert done["status"] == "succeeded", {n: (r["status"], r["error"]) for n, r in runs.items()}

    saved = runs["save"]["outputs"]
    response = await steps.client.get(
        f"/api/v1/projects/{project}/datasets/iris-by-species/versions/{saved['version']}",
        headers=auth(token),
    )
    assert response.status_code == 200, response.text
    version = response.json()
    lineage = version["lineage"]
    assert lineage["job_id"] == done["id"]
    assert lineage["recorded_by"] == "job"
    assert lineage["task"] == "save"
    assert lineage["inputs"] == ["joined"]
    assert lineage["workflow"] == {
        "id": done["workflow_id"],
        "name": "iris-by-species",
        "version": done["version"],
    }
    # Through the transform and the validation, back to what each ingest read.
    assert lineage["datasets"] == [
        {
            "dataset_id": iris["dataset_id"],
            "dataset": "iris",
            "version": 1,
            "version_id": iris["id"],
            "sha256": iris["sha256"],
            "task": "load",
        },
        {
            "dataset_id": species["dataset_id"],
            "dataset": "species",
            "version": 1,
            "version_id": species["id"],
            "sha256": species["sha256"],
            "task": "names",
        },
    ]

    logs = {name: await steps.logs(token, done["id"], name) for name in runs}
    columns = "sepal_length (Float64), sepal_width (Float64), petal_length (Float64), "
    assert f"[ingest] source: dataset iris version 1 (sha256 {iris['sha256']})" in logs["load"]
    assert f"[ingest] read {size(iris_path.stat().st_size)} as csv" in logs["load"]
    assert f"[ingest] rows out: 150 rows, 5 columns: {columns}" in logs["load"]
    assert "[ingest] rows out: 3 rows, 2 columns: target (Int64), species (String)" in logs["names"]
    assert _stages(logs["load"]) == {"fetch", "convert"}

    assert "[validate] rows in from load: 150 rows, 5 columns" in logs["check"]
    assert (
        "[validate] check not_null(sepal_length) [error] on sepal_length: passed" in logs["check"]
    )
    assert "[validate] check row_count [error]: passed, observed 150" in logs["check"]
    assert "[validate] result: passed, score 1, 0 error and 0 warning check(s)" in logs["check"]
    assert "[validate] report recorded on dataset iris version 1" in logs["check"]
    assert _stages(logs["check"]) == {"fetch", "checks"}

    assert f"[transform] rows in from check: 150 rows, 5 columns: {columns}" in logs["joined"]
    assert "[transform] rows in from names: 3 rows, 2 columns" in logs["joined"]
    assert "[transform] query: one DuckDB SQL query over check, names" in logs["joined"]
    assert (
        "[transform] rows out: 3 rows, 2 columns: species (String), rows (Int64)"
        in (logs["joined"])
    )
    assert _stages(logs["joined"]) == {"fetch", "query"}

    assert "[write_dataset] rows in from joined: 3 rows, 2 columns" in logs["save"]
    assert (
        f"[write_dataset] lineage: job {done['id']}, workflow iris-by-species version "
        f"{done['version']}, task save; source datasets: iris version 1 (sha256 "
        f"{iris['sha256']}, read by load), species version 1" in logs["save"]
    )
    assert (
        f"[write_dataset] wrote {size(version['size_bytes'])} as parquet: dataset "
        f"iris-by-species version 1 (sha256 {version['sha256']})" in logs["save"]
    )
    assert _stages(logs["save"]) == {"fetch", "lineage", "upload"}
    for text in logs.values():
        assert "eyJ" not in text  # no token reached a log
