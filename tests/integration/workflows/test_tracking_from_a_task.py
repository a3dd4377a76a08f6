"""A ``python`` task that uses ``armillary.tracking`` in a real sandboxed worker: its runs are
linked to the job and the task by the server (from the job token the worker's proxy adds), and
a run the task leaves open is still sent and ended when the sandbox finishes. A model the task
logs and registers has the job's lineage: the job, and the dataset version it ingested."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sklearn.datasets import load_iris
from tests.conftest import auth
from tests.integration.workflows.engine import Engine, Steps, tasks_by_name
from tests.integration.workflows.test_pipelines import upload

pytestmark = pytest.mark.slow

SOURCE = """
from armillary import tracking

def main(steps):
    with tracking.start_run("fit", experiment="from-jobs") as run:
        tracking.log_params({"lr": 0.1})
        for step in range(steps):
            tracking.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    left_open = tracking.start_run("left-open", experiment="from-jobs")
    for step in range(steps):
        tracking.log_metric("x", float(step), step=step)
    return {"run": run.id, "open": left_open.id}
"""
STEPS = 200


async def test_a_python_task_logs_runs_linked_to_its_job_and_task(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker", "--concurrency", "1")
    token, project = editor["token"], editor["project"]
    await steps.workflow(
        token,
        project,
        {
            "name": "tracked",
            "tasks": [
                {
                    "name": "train",
                    "type": "python",
                    "params": {"source": SOURCE, "args": {"steps": STEPS}},
                    "outputs": ["run", "open"],
                }
            ],
        },
    )
    job = await steps.run(token, project, "tracked")
    done = await steps.wait(token, job["id"], timeout=120)
    task = tasks_by_name(done)["train"]
    assert done["status"] == "succeeded", (task, engine.output("worker"))
    outputs = task["outputs"]

    async def run_of(run_id: str) -> dict[str, Any]:
        response = await steps.client.get(
            f"/api/v1/projects/{project}/runs/{run_id}", headers=auth(token)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def history(run_id: str, key: str) -> list[int]:
        response = await steps.client.get(
            f"/api/v1/projects/{project}/runs/{run_id}/metrics/{key}/history",
            headers=auth(token),
        )
        assert response.status_code == 200, response.text
        return [p["step"] for p in response.json()["points"]]

    fitted = await run_of(outputs["run"])
    assert fitted["job_id"] == job["id"]
    assert fitted["task"] == "train"
    assert fitted["tags"]["armillary.job_id"] == job["id"]
    assert fitted["tags"]["armillary.task"] == "train"
    assert fitted["status"] == "FINISHED"
    assert fitted["params"] == {"lr": "0.1"}
    assert await history(outputs["run"], "loss") == list(range(STEPS))

    # Never ended by the task: sent and ended by the sandbox's exit handlers.
    left_open = await run_of(outputs["open"])
    assert left_open["job_id"] == job["id"]
    assert left_open["status"] == "FINISHED"
    assert await history(outputs["open"], "x") == list(range(STEPS))


TRAIN_AND_REGISTER = """
import polars as pl
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from armillary import tracking

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

def main():
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    frame = pl.DataFrame(x, schema=COLUMNS, orient="row")
    with tracking.start_run("iris-lr", experiment="iris") as run:
        tracking.log_params({"max_iter": 300})
        tracking.log_metrics({"accuracy": float(model.score(x, y))})
        tracking.log_model(model, signature=tracking.infer_signature(frame, model.predict(x)))
    version = tracking.register_model(run, "iris-from-job")
    return {"run": run.id, "version": int(version["version"])}
"""


async def test_a_version_registered_from_a_jobs_run_has_the_jobs_lineage(
    platform: tuple[Engine, Steps], editor: dict[str, Any], tmp_path: Path
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker", "--concurrency", "1")
    token, project = editor["token"], editor["project"]
    csv = tmp_path / "iris.csv"
    x, y = load_iris(return_X_y=True)
    pl.DataFrame(x, schema=["a", "b", "c", "d"], orient="row").with_columns(
        pl.Series("species", y)
    ).write_csv(csv)
    dataset = await upload(steps, token, project, "iris", csv)
    await steps.workflow(
        token,
        project,
        {
            "name": "own-code",
            "tasks": [
                {"name": "load", "type": "ingest", "params": {"dataset": "iris", "version": 1}},
                {
                    "name": "fit",
                    "type": "python",
                    "needs": ["load"],
                    "params": {"source": TRAIN_AND_REGISTER},
                    "outputs": ["run", "version"],
                },
            ],
        },
    )
    job = await steps.run(token, project, "own-code")
    done = await steps.wait(token, job["id"], timeout=180)
    task = tasks_by_name(done)["fit"]
    assert done["status"] == "succeeded", (task, engine.output("worker"))
    number = task["outputs"]["version"]

    base = f"/api/v1/projects/{project}/models"
    found = await steps.client.get(f"{base}/iris-from-job/versions/{number}", headers=auth(token))
    assert found.status_code == 200, found.text
    lineage = found.json()["lineage"]
    assert lineage["run_id"] == task["outputs"]["run"]
    assert (lineage["job_id"], lineage["task"]) == (job["id"], "fit")

    graph = await steps.client.get(
        f"{base}/iris-from-job/versions/{number}/lineage", headers=auth(token)
    )
    assert graph.status_code == 200, graph.text
    nodes = graph.json()["nodes"]
    assert [(n["job_id"], n["task"]) for n in nodes if n["kind"] == "job"] == [(job["id"], "fit")]
    datasets = [n for n in nodes if n["kind"] == "dataset_version"]
    assert [(n["dataset"], n["version"], n["sha256"]) for n in datasets] == [
        ("iris", 1, dataset["sha256"])
    ]
    assert {"model_version", "workflow_version"} <= {n["kind"] for n in nodes}
    back = await steps.client.get(
        f"{base}/lineage", params={"dataset": "iris", "version": 1}, headers=auth(token)
    )
    assert back.status_code == 200, back.text
    assert [(v["model"], v["version"]) for v in back.json()["items"]] == [("iris-from-job", number)]
