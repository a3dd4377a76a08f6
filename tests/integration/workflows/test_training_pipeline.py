"""Training end to end on real data (scikit-learn's bundled breast-cancer set, no network):
ingest -> validate -> train -> evaluate -> register through real scheduler and worker
processes; the registered version's metrics are recomputed from the stored artifact, its
lineage reaches the dataset version's hash, and that version is held against deletion. A missed
evaluation threshold stops the workflow before `register`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from tests.integration.workflows.engine import Engine, Steps, tasks_by_name
from tests.integration.workflows.test_pipelines import upload

pytestmark = pytest.mark.slow

FEATURES = ["mean_radius", "mean_texture", "mean_perimeter", "mean_area", "mean_smoothness"]
MODEL = "cancer"


def cancer_csv(path: Path) -> Path:
    data = load_breast_cancer()
    frame = pl.DataFrame(data.data[:, : len(FEATURES)], schema=FEATURES, orient="row")
    frame = frame.with_columns(pl.Series("diagnosis", data.target))
    frame.write_csv(path)
    return path


def serving_tasks() -> list[dict[str, Any]]:
    """Put the registered version behind a deployment, then score the data set through it."""
    return [
        {
            "name": "deploy",
            "type": "deploy",
            "needs": ["register"],
            "params": {"registration": "register", "deployment": "cancer-live", "weight": 100},
        },
        {
            "name": "score",
            "type": "batch_predict",
            "needs": ["deploy", "check"],
            "params": {"deployment": "cancer-live", "input": "check", "dataset": "cancer-scored"},
        },
    ]


def training_workflow(
    name: str, *, min_accuracy: float, extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "tasks": [
            {"name": "load", "type": "ingest", "params": {"dataset": "cancer", "version": 1}},
            {
                "name": "check",
                "type": "validate",
                "needs": ["load"],
                "params": {
                    "input": "load",
                    "checks": [
                        {"type": "not_null", "column": "mean_radius"},
                        {"type": "row_count", "min": 500},
                    ],
                },
            },
            {
                "name": "train",
                "type": "train",
                "needs": ["check"],
                "params": {
                    "input": "check",
                    "target": "diagnosis",
                    "estimator": "RandomForestClassifier",
                    "hyperparameters": {"n_estimators": 40, "random_state": 3},
                    "validation": {"method": "holdout", "test_size": 0.25, "seed": 3},
                },
            },
            {
                "name": "evaluate",
                "type": "evaluate",
                "needs": ["train"],
                "params": {
                    "model": "train",
                    "thresholds": {"accuracy": {"min": min_accuracy}},
                    "compare": {"model": MODEL, "alias": "champion"},
                },
            },
            {
                "name": "register",
                "type": "register",
                "needs": ["train", "evaluate"],
                "params": {
                    "model": "train",
                    "evaluation": "evaluate",
                    "name": MODEL,
                    "alias": "challenger",
                    "tags": {"stage": "test"},
                },
            },
            *(extra or []),
        ],
    }


async def _get(steps: Steps, token: str, path: str) -> Any:
    response = await steps.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json() if "json" in response.headers.get("content-type", "") else response


async def _bytes(steps: Steps, token: str, path: str) -> bytes:
    response = await steps.client.get(
        path, headers={"Authorization": f"Bearer {token}"}, follow_redirects=True
    )
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return response.content


def _safe_load(blob: bytes, path: Path) -> Any:
    path.write_bytes(blob)
    untrusted = sio.get_untrusted_types(file=path)
    # Only scikit-learn and NumPy types: nothing that could run code on load.
    assert all(t.startswith(("sklearn.", "numpy.")) for t in untrusted), untrusted
    return sio.load(path, trusted=untrusted)


async def test_a_model_is_trained_evaluated_and_registered_with_its_lineage(
    platform: tuple[Engine, Steps], editor: dict[str, Any], tmp_path: Path
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    dataset = await upload(steps, token, project, "cancer", cancer_csv(tmp_path / "cancer.csv"))
    await steps.workflow(
        token, project, training_workflow("train-cancer", min_accuracy=0.8, extra=serving_tasks())
    )
    job = await steps.run(token, project, "train-cancer")
    done = await steps.wait(token, job["id"], timeout=300)
    runs = tasks_by_name(done)
    assert done["status"] == "succeeded", {n: (r["status"], r["error"]) for n, r in runs.items()}

    # Progress was reported while training and stays on the attempt.
    train = runs["train"]
    assert train["progress"] is not None, train
    assert train["outputs"]["estimator"] == "RandomForestClassifier"

    # The registered version carries the training metrics and evaluation metrics.
    registered = runs["register"]["outputs"]
    assert registered["model"] == MODEL
    base = f"/api/v1/projects/{project}/models/{MODEL}"
    version = await _get(steps, token, f"{base}/versions/{registered['version']}")
    assert version["metrics"]["accuracy"] == pytest.approx(train["outputs"]["metrics"]["accuracy"])
    assert "eval_accuracy" in version["metrics"]
    assert version["params"]["n_estimators"] == 40

    # Recompute the metrics from the stored artifact on the same hold-out rows.
    model = _safe_load(
        await _bytes(
            steps, token, f"{base}/versions/{registered['version']}/artifacts/model.skops"
        ),
        tmp_path / "model.skops",
    )
    holdout_ref = train["outputs"]["holdout"]
    holdout = pl.read_parquet(
        io.BytesIO(
            await _bytes(
                steps,
                token,
                f"/api/v1/jobs/{holdout_ref['job_id']}/tasks/{holdout_ref['task']}"
                f"/artifacts/{holdout_ref['name']}",
            )
        )
    )
    features = [c for c in holdout.columns if c != "diagnosis"]
    x = holdout.select(features).to_numpy()
    y = holdout["diagnosis"].to_numpy()
    predicted = model.predict(x)
    probabilities = model.predict_proba(x)
    expected = {
        "accuracy": accuracy_score(y, predicted),
        "precision": precision_score(y, predicted),
        "recall": recall_score(y, predicted),
        "f1": f1_score(y, predicted),
        "roc_auc": roc_auc_score(y, probabilities[:, 1]),
        "log_loss": log_loss(y, probabilities),
    }
    for name, value in expected.items():
        assert version["metrics"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert np.isfinite(list(expected.values())).all()

    # The alias was set by the workflow; the champion comparison saw no champion yet.
    alias = await _get(steps, token, f"{base}/aliases/challenger")
    assert alias["version"] == registered["version"]
    champion = runs["evaluate"]["outputs"]["champion"]
    assert champion["version"] is None
    assert champion["better"] is True

    # Lineage down to the dataset version's hash, and back.
    lineage = await _get(steps, token, f"{base}/versions/{registered['version']}/lineage")
    datasets = [n for n in lineage["nodes"] if n["kind"] == "dataset_version"]
    assert [(n["dataset"], n["version"], n["sha256"]) for n in datasets] == [
        ("cancer", 1, dataset["sha256"])
    ]
    kinds = {n["kind"] for n in lineage["nodes"]}
    assert {"model_version", "job", "workflow_version", "dataset_version"} <= kinds
    back = await _get(
        steps, token, f"/api/v1/projects/{project}/models/lineage?dataset=cancer&version=1"
    )
    assert [(v["model"], v["version"]) for v in back["items"]] == [(MODEL, registered["version"])]

    # The deploy task put the version behind a deployment; batch_predict scored every row
    # through it into a new dataset version whose predictions are the model's own.
    assert runs["deploy"]["outputs"]["model_version"] == registered["version"]
    scored_out = runs["score"]["outputs"]
    assert scored_out["rows"] == 569
    scored = pl.read_parquet(
        io.BytesIO(
            await _bytes(
                steps,
                token,
                f"/api/v1/projects/{project}/datasets/cancer-scored/versions/"
                f"{scored_out['version']}/content",
            )
        )
    )
    everything = pl.read_csv(tmp_path / "cancer.csv")
    assert (
        scored["prediction"].to_list()
        == model.predict(everything.select(FEATURES).to_numpy()).tolist()
    )

    # The dataset version the model was trained on is held: its deletion is refused.
    headers = {"Authorization": f"Bearer {token}"}
    refused = await steps.client.delete(
        f"/api/v1/projects/{project}/datasets/cancer/versions/1", headers=headers
    )
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert MODEL in json.dumps(refused.json())


async def test_a_missed_threshold_stops_the_workflow_before_register(
    platform: tuple[Engine, Steps], editor: dict[str, Any], tmp_path: Path
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    await upload(steps, token, project, "cancer", cancer_csv(tmp_path / "cancer.csv"))
    # No forest reaches 100% accuracy on this hold-out: the gate must close.
    await steps.workflow(token, project, training_workflow("strict", min_accuracy=1.0))
    job = await steps.run(token, project, "strict")
    done = await steps.wait(token, job["id"], timeout=300)
    runs = tasks_by_name(done)
    assert done["status"] == "failed"
    assert runs["train"]["status"] == "succeeded"
    assert runs["evaluate"]["status"] == "failed"
    assert "accuracy" in (runs["evaluate"]["error"] or "")
    report = runs["evaluate"]["report"]
    assert [t["passed"] for t in report["thresholds"]] == [False]
    assert runs["register"]["status"] == "upstream_failed"
    missing = await steps.client.get(
        f"/api/v1/projects/{project}/models/{MODEL}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert missing.status_code == 404
