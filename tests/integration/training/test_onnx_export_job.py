"""The ONNX export runs after the training job, as a job of its own (ADR 0018): a registered
version is ``pending`` until its export job attaches ``model.onnx`` (``ready``) or says why not
(``failed``); predictions come from skops until then and from ONNX after, without a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tests.conftest import auth
from tests.integration.training.conftest import Stage
from tests.integration.workflows.engine import tasks_by_name
from tests.integration.workflows.test_pipelines import upload

from armillary.contracts.training import TrainOutputs


def _workflow(name: str, dataset: str, target: str, estimator: str) -> dict[str, Any]:
    return {
        "name": name,
        "tasks": [
            {"name": "rows", "type": "ingest", "params": {"dataset": dataset, "version": 1}},
            {
                "name": "fit",
                "type": "train",
                "params": {
                    "input": "rows",
                    "target": target,
                    "estimator": estimator,
                    "hyperparameters": {"random_state": 0},
                },
                "needs": ["rows"],
            },
            {
                "name": "publish",
                "type": "register",
                "params": {"model": "fit", "name": name},
                "needs": ["fit"],
            },
        ],
    }


async def _version(stage: Stage, model: str, number: int) -> dict[str, Any]:
    response = await stage.steps.client.get(
        f"/api/v1/projects/{stage.project}/models/{model}/versions/{number}",
        headers=auth(stage.token),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _until_exported(stage: Stage, model: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        version = await _version(stage, model, 1)
        if version["onnx"]["status"] != "pending":
            return version
        assert time.monotonic() < deadline, f"the export is still pending: {version}"
        await asyncio.sleep(0.2)


async def _train_and_register(stage: Stage, model: str, dataset: str, target: str) -> str:
    """Runs the training job; returns its id once it succeeded, checking that it did not do
    the export itself."""
    steps, token = stage.steps, stage.token
    await steps.workflow(
        token, stage.project, _workflow(model, dataset, target, "DecisionTreeClassifier")
    )
    job = await steps.run(token, stage.project, model)
    done = await steps.wait(token, job["id"], timeout=240)
    runs = tasks_by_name(done)
    assert done["status"] == "succeeded", {n: (r["status"], r["error"]) for n, r in runs.items()}
    # The job did not wait for the export: it has no export task, its train task made no
    # model.onnx, and it left the rows the export is checked against.
    assert set(runs) == {"rows", "fit", "publish"}
    fit = TrainOutputs.model_validate(runs["fit"]["outputs"])
    assert fit.onnx is not None
    assert fit.onnx.status == "pending"
    assert fit.artifacts.onnx is None
    assert fit.artifacts.onnx_parity is not None
    assert "model.onnx" not in runs["fit"]["artifacts"]
    return str(done["id"])


async def _deploy_and_predict(stage: Stage, model: str, rows: list[list[float]]) -> dict[str, Any]:
    client = stage.steps.client
    base = f"/api/v1/projects/{stage.project}/deployments"
    created = await client.post(
        base,
        json={
            "name": f"{model}-api",
            "variants": [{"name": "main", "model": model, "version": 1, "weight": 100}],
            "reason": "test",
        },
        headers=auth(stage.token),
    )
    assert created.status_code in (200, 201), created.text
    return await _predict(stage, model, rows)


async def _predict(stage: Stage, model: str, rows: list[list[float]]) -> dict[str, Any]:
    response = await stage.steps.client.post(
        f"/api/v1/projects/{stage.project}/deployments/{model}-api/predict",
        json={"instances": rows},
        headers=auth(stage.token),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_version_goes_from_pending_to_ready_and_then_serves_from_onnx(
    stage: Stage,
) -> None:
    training_job = await _train_and_register(stage, "iris-tree", "iris", "species")
    version = await _version(stage, "iris-tree", 1)
    assert version["onnx"]["status"] in ("pending", "ready")

    exported = await _until_exported(stage, "iris-tree")
    assert exported["onnx"]["status"] == "ready"
    assert exported["onnx"]["reason"] is None
    assert "model.onnx" in exported["artifacts"]
    # The version is ready once `attach` has answered; the job ends right after.
    export_job = await stage.steps.wait(stage.token, exported["onnx"]["job_id"], timeout=120)
    assert export_job["trigger"] == "onnx_export"
    assert export_job["status"] == "succeeded"
    # It started after the training job had registered the version.
    training = await stage.steps.job(stage.token, training_job)
    publish = tasks_by_name(training)["publish"]
    assert tasks_by_name(export_job)["export"]["started_at"] >= publish["started_at"]
    assert export_job["id"] != training_job
    log = await stage.steps.logs(stage.token, export_job["id"], "export")
    assert "[onnx_export] onnx: exported; parity check passed" in log

    answer = await _deploy_and_predict(stage, "iris-tree", [[5.1, 3.5, 1.4, 0.2]])
    assert answer["runtime"] == "onnx"
    assert answer["predictions"] == ["setosa"]


async def test_a_failed_export_shows_failed_with_its_reason_and_keeps_serving_skops(
    stage: Stage, tmp_path: Path
) -> None:
    # Values 1e-9 apart are one value in float32, which ONNX computes in: a tree that splits
    # between them cannot be reproduced, so the parity check refuses the export.
    x = 1.0 + np.arange(200) * 1e-9
    frame = pl.DataFrame({"x": x, "label": [str(i % 2) for i in range(200)]})
    path = tmp_path / "close.csv"
    frame.write_csv(path, float_precision=12)
    await upload(stage.steps, stage.token, stage.project, "close", path)
    await _train_and_register(stage, "close-tree", "close", "label")

    exported = await _until_exported(stage, "close-tree")
    assert exported["onnx"]["status"] == "failed"
    assert "parity check failed" in exported["onnx"]["reason"]
    assert "model.onnx" not in exported["artifacts"]

    answer = await _deploy_and_predict(stage, "close-tree", [[1.0 + 3e-9]])
    assert answer["runtime"] == "skops"
    assert answer["predictions"] in (["0"], ["1"], [0], [1])
