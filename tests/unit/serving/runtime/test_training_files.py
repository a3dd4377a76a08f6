"""The runtime serves the files training itself writes (its pipeline, skops and ONNX export).

Only the test imports training, to catch the two sides drifting apart; serving's code does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from armillary.contracts.training import Preprocessing
from armillary.serving.runtime import decode_records, load_model
from armillary.training import artifacts
from armillary.training.estimators import build_pipeline


@pytest.mark.parametrize("name", ["LogisticRegression", "RandomForestClassifier"])
def test_training_files_load_and_answer_like_the_pipeline(name: str, tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    pipeline = build_pipeline(
        name, {}, n_features=4, categorical=[], preprocessing=Preprocessing(), seed=0
    ).fit(x, labels)
    skops_path = artifacts.save_skops(pipeline, tmp_path)
    onnx_path = artifacts.export_onnx(pipeline, x, "classification", name, tmp_path)
    assert onnx_path is not None
    features = ["sl", "sw", "pl", "pw"]
    signature = {
        "inputs": [{"name": f, "dtype": "Float64"} for f in features],
        "target": {"name": "species", "dtype": "String"},
        "problem": "classification",
        "classes": ["setosa", "versicolor", "virginica"],
    }
    body = {"dataframe_split": {"columns": features, "data": x[::10].tolist()}}
    expected = pipeline.predict(x[::10]).tolist()
    for path, fmt in ((skops_path, "skops"), (onnx_path, "onnx")):
        model = load_model("v", path, fmt, signature)
        pred = model.predict(decode_records(body, model.signature))
        assert pred.outputs == expected
        assert pred.probabilities is not None


def test_string_features_from_training_are_served_from_skops(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = np.empty((60, 2), dtype=object)
    x[:, 0] = rng.normal(size=60)
    x[:, 1] = rng.choice(["a", "b"], size=60).tolist()
    y = (x[:, 1] == "a").astype(int)
    pipeline = build_pipeline(
        "RandomForestClassifier",
        {"n_estimators": 5},
        n_features=2,
        categorical=[1],
        preprocessing=Preprocessing(),
        seed=0,
    ).fit(x, y)
    path = artifacts.save_skops(pipeline, tmp_path)
    signature = {
        "inputs": [
            {"name": "v", "dtype": "Float64", "imputed": True},
            {"name": "k", "dtype": "String", "imputed": True},
        ],
        "target": {"name": "t", "dtype": "Int64"},
        "problem": "classification",
        "classes": [0, 1],
    }
    model = load_model("v", path, "skops", signature)
    rows = decode_records(
        {"instances": [{"v": 0.1, "k": "a"}, {"v": None, "k": "b"}]}, model.signature
    )
    pred = model.predict(rows)
    assert pred.outputs == [1, 0]
    assert pred.probabilities is not None
    assert list(pred.probabilities[0]) == ["0", "1"]
