"""Training and evaluation against the real platform.

A real job (ingest → train → evaluate, run by a worker process) trains on iris; then
``run_train`` / ``run_evaluate`` are called directly with that job's token on the three
scikit-learn data sets: hold-out and k-fold, a grid search, XGBoost and LightGBM, a missed
threshold. Sync task code runs in a thread: the API it calls is served by this event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from tests.conftest import auth
from tests.integration.training.conftest import Stage
from tests.integration.workflows.engine import tasks_by_name

from armillary.contracts.training import EvaluationFailed, TrainOutputs
from armillary.kit.model_files import load_skops
from armillary.sdk.task_log import number, pairs, size
from armillary.training.metrics import score
from armillary.training.tabular import feature_matrix, target_array
from armillary.training.tasks import run_evaluate, run_train

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]


async def _artifact(stage: Stage, ref: dict[str, Any], dest: Path) -> Path:
    url = f"/api/v1/jobs/{ref['job_id']}/tasks/{ref['task']}/artifacts/{ref['name']}"
    response = await stage.steps.client.get(url, headers=auth(stage.token))
    assert response.status_code == 200, response.text
    dest.write_bytes(response.content)
    return dest


async def test_a_job_trains_and_evaluates_and_the_stored_model_reproduces_its_metrics(
    stage: Stage, tmp_path: Path
) -> None:
    fit = TrainOutputs.model_validate(stage.outputs["fit"])
    assert fit.estimator == "RandomForestClassifier"
    assert fit.rows == 150
    assert fit.signature.classes == ["setosa", "versicolor", "virginica"]
    assert fit.table_sha256 == stage.outputs["iris"]["sha256"]
    assert fit.dataset is not None
    assert fit.dataset.name == "iris"
    # The export runs after the job, once the model is registered (ADR 0018).
    assert fit.artifacts.onnx is None
    assert fit.artifacts.onnx_parity is not None
    assert fit.onnx is not None
    assert fit.onnx.status == "pending"
    assert fit.holdout is not None
    check = stage.outputs["check"]
    assert check["passed"] is True
    assert check["rows"] == 30
    assert check["metrics"] == pytest.approx(fit.metrics)
    # The artifacts the worker uploaded: the skops model recomputes the reported metrics.
    assert fit.artifacts.skops is not None
    model = load_skops(
        await _artifact(stage, fit.artifacts.skops.model_dump(), tmp_path / "m.skops")
    )
    holdout = pl.read_parquet(await _artifact(stage, fit.holdout.model_dump(), tmp_path / "h.pq"))
    x = feature_matrix(holdout, fit.signature.inputs)
    y = target_array(holdout, "species", "classification")
    assert score(model, x, y, "classification") == pytest.approx(fit.metrics)
    signature = await _artifact(stage, fit.artifacts.signature.model_dump(), tmp_path / "s.json")
    assert json.loads(signature.read_text())["classes"] == fit.signature.classes


CASES = {
    "iris-kfold": (
        "iris",
        {"target": "species", "estimator": "LogisticRegression", "validation": {"method": "kfold"}},
    ),
    "diabetes-holdout": (
        "diabetes",
        {
            "target": "progression",
            "estimator": "GradientBoostingRegressor",
            "hyperparameters": {"n_estimators": 50},
        },
    ),
    "cancer-xgboost": (
        "cancer",
        {
            "target": "malignant",
            "estimator": "XGBClassifier",
            "hyperparameters": {"n_estimators": 30},
        },
    ),
    "cancer-lightgbm": (
        "cancer",
        {
            "target": "malignant",
            "estimator": "LGBMClassifier",
            "hyperparameters": {"n_estimators": 30},
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_direct_training_on_the_real_api(stage: Stage, case: str) -> None:
    source, params = CASES[case]
    context = stage.context()
    inputs = {source: stage.outputs[source]}
    outputs = await asyncio.to_thread(run_train, {"input": source, **params}, inputs, context)
    out = TrainOutputs.model_validate(outputs)
    assert out.table_sha256 == stage.outputs[source]["sha256"]
    model = load_skops(context.artifacts_dir / "model.skops")
    if out.problem == "classification":
        assert out.metrics["accuracy"] > 0.85
        assert "roc_auc" in out.metrics
    else:
        assert out.metrics["r2"] > 0.2
        assert out.metrics["rmse"] > 0
    if case == "iris-kfold":
        assert out.holdout is None
        assert set(out.metrics_std) == set(out.metrics)
        assert len(model.predict(np.zeros((2, 4)))) == 2
    else:
        # Recompute the hold-out metrics from the stored model and the stored hold-out rows.
        holdout = pl.read_parquet(context.artifacts_dir / "holdout.parquet")
        x = feature_matrix(holdout, out.signature.inputs)
        y = target_array(holdout, out.signature.target.name, out.problem)
        assert score(model, x, y, out.problem) == pytest.approx(out.metrics)
    boosting = params["estimator"] in {"XGBClassifier", "LGBMClassifier"}
    assert out.artifacts.onnx is None
    assert out.onnx is not None
    assert out.onnx.status == ("failed" if boosting else "pending")
    assert (out.artifacts.onnx_parity is None) == boosting
    environment = json.loads((context.artifacts_dir / "environment.json").read_text())
    assert ("lightgbm" in environment) == (params["estimator"] == "LGBMClassifier")
    importances = json.loads((context.artifacts_dir / "importances.json").read_text())
    assert len(importances["importances"]) == len(out.signature.inputs)


async def test_a_grid_search_records_every_trial(stage: Stage) -> None:
    context = stage.context()
    params = {
        "input": "cancer",
        "target": "malignant",
        "estimator": "DecisionTreeClassifier",
        "search": {"space": {"max_depth": [1, 3, 5], "min_samples_leaf": [1, 10]}, "folds": 3},
    }
    outputs = await asyncio.to_thread(
        run_train, params, {"cancer": stage.outputs["cancer"]}, context
    )
    assert outputs["trials"] == 6
    trials = json.loads((context.artifacts_dir / "trials.json").read_text())
    assert len(trials) == 6
    assert sum(t["best"] for t in trials) == 1
    best = next(t for t in trials if t["best"])
    assert best["metrics"]["f1"] == max(t["metrics"]["f1"] for t in trials)
    assert {**best["hyperparameters"]} == outputs["hyperparameters"]
    assert outputs["artifacts"]["trials"]["name"] == "trials.json"


async def test_a_missed_threshold_fails_the_evaluation_with_its_report(stage: Stage) -> None:
    params = {
        "model": "fit",
        "thresholds": {"accuracy": {"min": 0.999, "max": 0.9999}, "log_loss": {"max": 5.0}},
        "compare": {"model": "iris-model", "metric": "accuracy"},
    }
    with pytest.raises(EvaluationFailed) as failed:
        await asyncio.to_thread(
            run_evaluate, params, {"fit": stage.outputs["fit"]}, stage.context()
        )
    report = failed.value.report
    assert report["passed"] is False
    assert {t["metric"]: t["passed"] for t in report["thresholds"]} == {
        "accuracy": False,
        "log_loss": True,
    }
    # No champion registered yet: nothing to beat.
    assert report["champion"]["version"] is None
    assert report["champion"]["better"] is True
    assert "accuracy" in str(failed.value)


async def test_evaluate_on_an_explicit_input_table(stage: Stage) -> None:
    # The whole iris table (training rows included) through the seed job's model.
    params = {"model": "fit", "input": "iris"}
    inputs = {"fit": stage.outputs["fit"], "iris": stage.outputs["iris"]}
    result = await asyncio.to_thread(run_evaluate, params, inputs, stage.context())
    assert result["rows"] == 150
    assert result["passed"] is True
    assert result["table_sha256"] == stage.outputs["iris"]["sha256"]


STORY_WORKFLOW = {
    "name": "training-story",
    "tasks": [
        {"name": "rows", "type": "ingest", "params": {"dataset": "iris", "version": 1}},
        {
            "name": "tuned",
            "type": "train",
            "params": {
                "input": "rows",
                "target": "species",
                "estimator": "DecisionTreeClassifier",
                "search": {"space": {"max_depth": [1, 3]}, "folds": 3},
            },
            "needs": ["rows"],
        },
        {
            "name": "folds",
            "type": "train",
            "params": {
                "input": "rows",
                "target": "species",
                "estimator": "LogisticRegression",
                "validation": {"method": "kfold", "folds": 3},
                "tracking": {"experiment": "iris-folds"},
            },
            "needs": ["rows"],
        },
        {
            "name": "judge",
            "type": "evaluate",
            "params": {"model": "tuned", "thresholds": {"accuracy": {"min": 0.5}}},
            "needs": ["tuned"],
        },
    ],
}
STAGE_LINE = re.compile(r"^\[(\w+)\] stage (\w+): \d+\.\d\d s$", re.MULTILINE)


def _stages(log: str) -> set[str]:
    return {match[2] for match in STAGE_LINE.finditer(log)}


async def test_a_training_job_tells_its_story_in_the_task_logs(
    stage: Stage, tmp_path: Path
) -> None:
    steps, token = stage.steps, stage.token
    await steps.workflow(token, stage.project, STORY_WORKFLOW)
    job = await steps.run(token, stage.project, "training-story")
    done = await steps.wait(token, job["id"], timeout=240)
    runs = tasks_by_name(done)
    assert done["status"] == "succeeded", {n: (r["status"], r["error"]) for n, r in runs.items()}
    tuned = TrainOutputs.model_validate(runs["tuned"]["outputs"])
    log = await steps.logs(token, done["id"], "tuned")

    # The data and the split.
    digest = runs["rows"]["outputs"]["sha256"]
    assert f"[train] data: 150 rows read (sha256 {digest}), 150 with a target" in log
    features = "sepal_length, sepal_width, petal_length, petal_width"
    assert f"[train] columns: 4 features ({features}), 0 categorical" in log
    assert "[train] target: species (String), classification, 3 classes" in log
    assert (
        "[train] split: hold-out, 120 training rows and 30 test rows (test_size 0.2, "
        "stratified by class, seed 0)" in log
    )
    # Each trial with its parameters and score, as trials.json records them.
    assert tuned.artifacts.trials is not None
    trials = json.loads(
        (
            await _artifact(stage, tuned.artifacts.trials.model_dump(), tmp_path / "t.json")
        ).read_text()
    )
    assert "[train] search: grid search over 2 candidates, 3-fold cross-validation" in log
    for trial in trials:
        hyper = pairs(trial["hyperparameters"])
        f1 = number(trial["metrics"]["f1"])
        assert f"[train] trial {trial['number']}/2: {hyper}: f1={f1} (" in log
    assert f"[train] search: best trial {next(t for t in trials if t['best'])['number']}" in log
    # The final metrics, the ONNX check and every artifact with its size.
    assert f"[train] metrics on the 30 hold-out rows: {pairs(tuned.metrics)}" in log
    assert "[train] onnx: pending: exported and checked against model.skops on 150 rows" in log
    for name in ("model.skops", "onnx_parity.npy", "signature.json", "trials.json"):
        ref = {"job_id": done["id"], "task": "tuned", "name": name}
        stored = await _artifact(stage, ref, tmp_path / name)
        assert f"[train] artifact {name}: {size(stored.stat().st_size)}" in log
    assert _stages(log) == {"read", "search", "fit", "score", "tracking", "artifacts"}

    folds = await steps.logs(token, done["id"], "folds")
    assert "[train] split: 3-fold cross-validation over 150 rows (stratified by class" in folds
    assert all(f"[train] fold {n}/3: accuracy=" in folds for n in (1, 2, 3))
    assert "[train] metrics, mean ± std over 3 folds: accuracy=" in folds
    assert _stages(folds) == {"read", "cross_validation", "fit", "tracking", "artifacts"}

    judged = runs["judge"]["outputs"]
    evaluation = await steps.logs(token, done["id"], "judge")
    assert "[evaluate] model: DecisionTreeClassifier from task tuned (model.skops)" in evaluation
    assert "[evaluate] data: 30 rows from the hold-out of tuned" in evaluation
    assert f"[evaluate] metrics on 30 rows: {pairs(judged['metrics'])}" in evaluation
    accuracy = number(judged["metrics"]["accuracy"])
    assert f"[evaluate] threshold accuracy >= 0.5: {accuracy}, passed" in evaluation
    assert "[evaluate] result: passed" in evaluation
    assert _stages(evaluation) == {"read", "score", "compare"}
    for text in (log, folds, evaluation):
        assert "eyJ" not in text  # no token reached a log

    # The train tasks as runs: a parent run per task, a nested run per trial, linked to the job.
    await _assert_tracked(stage, done["id"], tuned, trials, log)
    folded = TrainOutputs.model_validate(runs["folds"]["outputs"])
    listed = await _runs(stage, "iris-folds")
    assert [(r["name"], r["job_id"], r["task"]) for r in listed] == [("folds", done["id"], "folds")]
    assert listed[0]["params"] == {"estimator": "LogisticRegression"}
    assert listed[0]["metrics"] == pytest.approx(
        {**folded.metrics, **{f"{k}_std": v for k, v in folded.metrics_std.items()}}
    )


async def _runs(stage: Stage, experiment: str) -> list[dict[str, Any]]:
    response = await stage.steps.client.get(
        f"/api/v1/projects/{stage.project}/experiments/{experiment}/runs",
        params={"order_by": "attributes.run_name ASC"},
        headers=auth(stage.token),
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _assert_tracked(
    stage: Stage, job_id: str, tuned: TrainOutputs, trials: list[dict[str, Any]], log: str
) -> None:
    listed = {r["name"]: r for r in await _runs(stage, "training-story")}
    assert set(listed) == {"tuned", "trial-1", "trial-2"}
    parent = listed["tuned"]
    assert f"[train] tracking: run {parent['id']} in experiment 'training-story', " in log
    assert (parent["job_id"], parent["task"], parent["status"]) == (job_id, "tuned", "FINISHED")
    assert parent["parent_run_id"] is None
    assert parent["params"] == {
        "estimator": "DecisionTreeClassifier",
        **{k: str(v) for k, v in tuned.hyperparameters.items()},
    }
    assert parent["metrics"] == pytest.approx(tuned.metrics)
    assert parent["tags"]["armillary.source"] == "train-task"
    for trial in trials:
        run = listed[f"trial-{trial['number']}"]
        assert run["parent_run_id"] == parent["id"]
        assert (run["job_id"], run["task"], run["status"]) == (job_id, "tuned", "FINISHED")
        assert run["params"] == {k: str(v) for k, v in trial["hyperparameters"].items()}
        assert run["metrics"] == pytest.approx(trial["metrics"])
        assert run["tags"]["best"] == str(trial["best"]).lower()
