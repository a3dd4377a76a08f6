"""``run_train`` and ``run_evaluate`` end to end against a stand-in of the API: what they
fetch, what they write, what they return; failures of progress reports; the SageMaker branch.
The same paths run against the real API in tests/integration/training."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from tests.unit.training.conftest import cancer_frame, diabetes_frame, iris_frame
from tests.unit.training.fakes import JOB, FakePlatform

from armillary.contracts.training import EvaluationFailed, TrainOutputs
from armillary.kit.model_files import load_skops
from armillary.training.evaluate import run_evaluate
from armillary.training.metrics import score
from armillary.training.tabular import TrainingError, feature_matrix, target_array
from armillary.training.tasks import run_train


def _train(
    fake: FakePlatform, tmp_path: Path, params: dict[str, Any], frame: pl.DataFrame
) -> tuple[dict[str, Any], dict[str, Any]]:
    inputs = {"load": fake.add_table("load", frame, tmp_path)}
    context = fake.context(tmp_path, "fit")
    outputs = run_train({"input": "load", **params}, inputs, context)
    fake.upload(context)
    return outputs, {"load": inputs["load"], "fit": outputs}


def test_holdout_training_writes_every_artifact_and_keeps_the_holdout(
    fake: FakePlatform, tmp_path: Path
) -> None:
    params = {"target": "species", "estimator": "LogisticRegression"}
    outputs, _ = _train(fake, tmp_path, params, iris_frame())
    out = TrainOutputs.model_validate(outputs)
    names = {name for (_, task, name) in fake.artifacts if task == "fit"}
    assert names == {
        "model.skops",
        "onnx_parity.npy",
        "signature.json",
        "environment.json",
        "importances.json",
        "holdout.parquet",
    }
    assert out.holdout is not None
    assert out.holdout.name == "holdout.parquet"
    assert out.artifacts.skops is not None
    assert out.artifacts.skops.job_id == JOB
    assert out.signature.classes == ["setosa", "versicolor", "virginica"]
    assert out.signature.target.name == "species"
    assert [f.name for f in out.signature.inputs][:2] == ["sepal_length", "sepal_width"]
    assert out.rows == 150
    assert out.trials == 0
    assert out.format == "skops"
    assert out.table_sha256 == fake.add_table("x", iris_frame(), tmp_path)["sha256"]
    assert out.dataset is not None
    assert out.dataset.version == 3
    # The drift reference of every input feature (ADR 0032): ten quantile bins of iris.
    assert out.drift_reference is not None
    assert out.drift_reference.rows == 150
    assert set(out.drift_reference.features) == {f.name for f in out.signature.inputs}
    sepal = out.drift_reference.features["sepal_length"]
    assert sepal.kind == "numeric"
    assert sum(sepal.fractions) == pytest.approx(1.0)
    holdout = pl.read_parquet(tmp_path.glob("work-fit-*/artifacts/holdout.parquet").__next__())
    assert holdout.height == 30  # test_size 0.2 of 150
    # Stratified: every class keeps its share.
    assert sorted(holdout["species"].value_counts()["count"].to_list()) == [10, 10, 10]
    # The stored model recomputes the reported hold-out metrics exactly.
    model = load_skops(next(tmp_path.glob("work-fit-*/artifacts/model.skops")))
    features = out.signature.inputs
    again = score(
        model, feature_matrix(holdout, features), holdout["species"].to_numpy(), "classification"
    )
    assert again == pytest.approx(out.metrics)
    env = json.loads(next(tmp_path.glob("work-fit-*/artifacts/environment.json")).read_text())
    assert {"python", "numpy", "scikit-learn", "skops", "polars", "onnxruntime"} <= set(env)
    assert {p["stage"] for p in fake.progress} == {"fit"}


def test_kfold_reports_fold_means_and_refits_on_every_row(
    fake: FakePlatform, tmp_path: Path
) -> None:
    params = {
        "target": "progression",
        "estimator": "Ridge",
        "hyperparameters": {"alpha": 0.5},
        "validation": {"method": "kfold", "folds": 4},
    }
    outputs, _ = _train(fake, tmp_path, params, diabetes_frame())
    out = TrainOutputs.model_validate(outputs)
    assert set(out.metrics) == {"rmse", "mae", "r2"} == set(out.metrics_std)
    assert out.holdout is None
    folds = [p for p in fake.progress if p["stage"] == "cross_validation"]
    assert [(p["current"], p["total"]) for p in folds] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert np.mean([p["metrics"]["rmse"] for p in folds]) == pytest.approx(out.metrics["rmse"])
    model = load_skops(next(tmp_path.glob("work-fit-*/artifacts/model.skops")))
    assert model.named_steps["model"].alpha == 0.5
    # Refitted on all 442 rows.
    numeric = model.named_steps["preprocess"].named_transformers_["numeric"]
    assert numeric.named_steps["scale"].n_samples_seen_ == 442


def test_a_failing_progress_call_does_not_fail_training(
    fake: FakePlatform, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fake.progress_status = 409
    params = {"target": "malignant", "estimator": "DecisionTreeClassifier", "onnx": False}
    outputs, _ = _train(fake, tmp_path, params, cancer_frame())
    assert outputs["metrics"]["accuracy"] > 0.8
    assert fake.progress  # it tried
    assert "progress not shown" in capfd.readouterr().err


def test_a_tracking_service_that_fails_does_not_fail_training(
    fake: FakePlatform, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    params = {
        "target": "malignant",
        "estimator": "DecisionTreeClassifier",
        "onnx": False,
        "tracking": {"experiment": "cancer"},
    }
    outputs, _ = _train(fake, tmp_path, params, cancer_frame())
    assert outputs["metrics"]["accuracy"] > 0.8
    assert fake.tracking_calls  # it tried
    assert "warning: tracking: the runs were not recorded (503" in capfd.readouterr().out


def test_tracking_can_be_turned_off(fake: FakePlatform, tmp_path: Path) -> None:
    params = {
        "target": "malignant",
        "estimator": "DecisionTreeClassifier",
        "onnx": False,
        "tracking": {"enabled": False},
    }
    _train(fake, tmp_path, params, cancer_frame())
    assert fake.tracking_calls == []


def test_evaluate_defaults_to_the_holdout_and_fails_closed(
    fake: FakePlatform, tmp_path: Path
) -> None:
    params = {"target": "species", "estimator": "LogisticRegression"}
    trained, inputs = _train(fake, tmp_path, params, iris_frame())
    context = fake.context(tmp_path, "eval")
    passed = run_evaluate(
        {"model": "fit", "thresholds": {"accuracy": {"min": 0.5}}}, inputs, context
    )
    assert passed["passed"] is True
    assert passed["rows"] == 30
    assert passed["metrics"] == pytest.approx(trained["metrics"])
    with pytest.raises(EvaluationFailed) as failed:
        run_evaluate(
            {"model": "fit", "thresholds": {"accuracy": {"max": 0.1}, "f1": {"min": 0.5}}},
            inputs,
            fake.context(tmp_path, "eval"),
        )
    report = failed.value.report
    assert report["passed"] is False
    assert [(t["metric"], t["passed"]) for t in report["thresholds"]] == [
        ("accuracy", False),
        ("f1", True),
    ]
    assert "accuracy" in str(failed.value)


def test_a_metric_that_cannot_be_computed_fails_its_threshold(
    fake: FakePlatform, tmp_path: Path
) -> None:
    # RidgeClassifier has no predict_proba: no roc_auc, so a roc_auc threshold fails closed.
    params = {"target": "species", "estimator": "RidgeClassifier"}
    _, inputs = _train(fake, tmp_path, params, iris_frame())
    with pytest.raises(EvaluationFailed) as failed:
        run_evaluate(
            {"model": "fit", "thresholds": {"roc_auc": {"min": 0.0}}},
            inputs,
            fake.context(tmp_path, "eval"),
        )
    [result] = failed.value.report["thresholds"]
    assert result == {"metric": "roc_auc", "value": None, "min": 0.0, "max": None, "passed": False}


def test_champion_comparison(fake: FakePlatform, tmp_path: Path) -> None:
    strong = {"target": "species", "estimator": "LogisticRegression"}
    _, inputs = _train(fake, tmp_path, strong, iris_frame())
    compare = {"model": "iris", "metric": "accuracy", "must_beat": True}
    # No champion yet: the challenger wins by default.
    first = run_evaluate({"model": "fit", "compare": compare}, inputs, fake.context(tmp_path, "e"))
    assert first["champion"]["version"] is None
    assert first["champion"]["better"] is True
    # A champion that is already perfect on these rows cannot be beaten.
    skops = fake.artifacts[(JOB, "fit", "model.skops")]
    fake.aliases[("iris", "champion")] = {"alias": "champion", "version": 4, "model_version": {}}
    fake.model_files[("iris", 4, "model.skops")] = skops
    with pytest.raises(EvaluationFailed) as failed:
        run_evaluate({"model": "fit", "compare": compare}, inputs, fake.context(tmp_path, "e"))
    champion = failed.value.report["champion"]
    assert champion["version"] == 4
    assert champion["better"] is False
    assert champion["champion_value"] == champion["challenger_value"]
    # Without must_beat the same result is reported but the task passes.
    compare["must_beat"] = False
    ok = run_evaluate({"model": "fit", "compare": compare}, inputs, fake.context(tmp_path, "e"))
    assert ok["passed"] is True
    assert ok["champion"]["better"] is False


def test_lower_is_better_metrics_compare_the_right_way(fake: FakePlatform, tmp_path: Path) -> None:
    weak = {
        "target": "progression",
        "estimator": "DecisionTreeRegressor",
        "hyperparameters": {"max_depth": 1},
    }
    _, _weak_inputs = _train(fake, tmp_path, weak, diabetes_frame())
    fake.aliases[("d", "champion")] = {"alias": "champion", "version": 1, "model_version": {}}
    fake.model_files[("d", 1, "model.skops")] = fake.artifacts[(JOB, "fit", "model.skops")]
    strong = {"target": "progression", "estimator": "Ridge"}
    _, inputs = _train(fake, tmp_path, strong, diabetes_frame())
    result = run_evaluate(
        {"model": "fit", "compare": {"model": "d", "must_beat": True}},
        inputs,
        fake.context(tmp_path, "e"),
    )
    champion = result["champion"]
    assert champion["metric"] == "rmse"
    assert champion["challenger_value"] < champion["champion_value"]
    assert champion["better"] is True


def test_bad_inputs_are_refused_with_a_reason(fake: FakePlatform, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no target column"):
        _train(fake, tmp_path, {"target": "nope", "estimator": "Ridge"}, diabetes_frame())
    with pytest.raises(TrainingError, match="not a direct upstream"):
        run_train(
            {"input": "elsewhere", "target": "y", "estimator": "Ridge"},
            {},
            fake.context(tmp_path, "fit"),
        )
    kfold = {"target": "progression", "estimator": "Ridge", "validation": {"method": "kfold"}}
    _, inputs = _train(fake, tmp_path, kfold, diabetes_frame())
    with pytest.raises(TrainingError, match="no hold-out rows"):
        run_evaluate({"model": "fit"}, inputs, fake.context(tmp_path, "e"))


def _sagemaker_params() -> dict[str, Any]:
    return {
        "target": "species",
        "estimator": "LogisticRegression",
        "backend": "sagemaker",
        "sagemaker": {
            "image": "123.dkr.ecr.eu-west-1.amazonaws.com/train:1",
            "role_arn": "arn:aws:iam::123456789012:role/train",
            "bucket": "bucket-1",
        },
    }


def test_sagemaker_backend_trains_remotely_and_scores_locally(
    fake: FakePlatform, tmp_path: Path
) -> None:
    import skops.io as sio

    from armillary.contracts.training import Preprocessing
    from armillary.training.estimators import build_pipeline

    handed: dict[str, Any] = {}

    def worker(upload: bytes) -> tuple[dict[str, Any], bytes]:
        # The worker's side (it holds the AWS credentials): the job trains on what was sent.
        rows = pl.read_parquet(io.BytesIO(upload))
        handed["rows"] = rows.height
        x = feature_matrix(rows, [f for f in _features(rows, "species")])
        model = build_pipeline(
            "LogisticRegression",
            {},
            n_features=4,
            categorical=[],
            preprocessing=Preprocessing(),
            seed=0,
        ).fit(x, target_array(rows, "species", "classification"))
        return {"format": "skops", "job_name": "sm-job-1"}, sio.dumps(model)

    fake.worker_calls["sagemaker_train"] = worker
    outputs, _ = _train(fake, tmp_path, _sagemaker_params(), iris_frame())
    assert handed["rows"] == 120  # only the training split left the platform
    assert outputs["backend"] == "sagemaker"
    assert outputs["training_job"] == "sm-job-1"
    assert outputs["holdout"]["name"] == "holdout.parquet"
    assert outputs["metrics"]["accuracy"] > 0.8
    # The job's own statuses are reported by the worker that follows it, not from here.
    assert "evaluate" in {p["stage"] for p in fake.progress}


def test_sagemaker_failure_reported_by_the_worker_fails_the_task(
    fake: FakePlatform, tmp_path: Path
) -> None:
    fake.worker_calls["sagemaker_train"] = lambda _: "SageMaker training job x failed: OOM"
    with pytest.raises(TrainingError, match="failed: OOM"):
        _train(fake, tmp_path, _sagemaker_params(), iris_frame())


def _features(rows: pl.DataFrame, target: str) -> list[Any]:
    from armillary.contracts.training import FeatureSpec

    return [FeatureSpec(name=c, dtype=str(t)) for c, t in rows.schema.items() if c != target]
