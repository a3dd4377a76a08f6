"""ONNX export: kept only when it converts and reproduces the pipeline's predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from armillary.contracts.training import Preprocessing
from armillary.kit.model_files import onnx_session as load_onnx_session
from armillary.training import artifacts
from armillary.training.estimators import build_pipeline


def _fit(name: str, x: Any, y: Any, **hyper: Any) -> Any:
    return build_pipeline(
        name, hyper, n_features=x.shape[1], categorical=[], preprocessing=Preprocessing(), seed=0
    ).fit(x, y)


@pytest.mark.parametrize("name", ["LogisticRegression", "RandomForestClassifier"])
def test_classifiers_export_with_the_same_labels(name: str, tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    pipeline = _fit(name, x, labels)
    path = artifacts.export_onnx(pipeline, x, "classification", name, tmp_path)
    assert path is not None
    session = load_onnx_session(path)
    label, proba = session.run(None, {"input": x.astype(np.float32)})
    assert np.array_equal(label, pipeline.predict(x))
    assert proba.shape == (150, 3)


def test_regressors_export_within_float_tolerance(tmp_path: Path) -> None:
    x, y = load_diabetes(return_X_y=True)
    pipeline = _fit("Ridge", x, y)
    path = artifacts.export_onnx(pipeline, x, "regression", "Ridge", tmp_path)
    assert path is not None
    [got] = load_onnx_session(path).run(None, {"input": x.astype(np.float32)})
    assert np.allclose(got.ravel(), pipeline.predict(x), rtol=1e-3)


def test_boosting_and_string_features_are_skipped(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    assert (
        artifacts.export_onnx(
            _fit("XGBClassifier", x, y, n_estimators=3),
            x,
            "classification",
            "XGBClassifier",
            tmp_path,
        )
        is None
    )
    objects = x.astype(object)
    assert (
        artifacts.export_onnx(
            _fit("LogisticRegression", x, y),
            objects,
            "classification",
            "LogisticRegression",
            tmp_path,
        )
        is None
    )
    assert not (tmp_path / "model.onnx").exists()


def test_an_export_that_predicts_differently_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = load_iris(return_X_y=True)
    pipeline = _fit("LogisticRegression", x, y)
    original = pipeline.predict
    # The pipeline changes its mind after conversion: the export no longer matches it.
    monkeypatch.setattr(pipeline, "predict", lambda rows: (original(rows) + 1) % 3)
    assert (
        artifacts.export_onnx(pipeline, x, "classification", "LogisticRegression", tmp_path) is None
    )
    assert not (tmp_path / "model.onnx").exists()
