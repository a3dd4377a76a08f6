"""A ``python`` task that uses ``armillary.tracking`` in a real sandboxed worker: its runs are
linked to the job and the task by the server (from the job token the worker's proxy adds), and
a run the task leaves open is still sent and ended when the sandbox finishes."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import auth
from tests.integration.workflows.engine import Engine, Steps, tasks_by_name

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
