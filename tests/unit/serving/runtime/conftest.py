"""Real small scikit-learn models, saved the way training saves them (skops, and ONNX through
skl2onnx with ``zipmap=False`` for classifiers), with their signatures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = np.array(["setosa", "versicolor", "virginica"], dtype=object)


@dataclass(frozen=True)
class Trained:
    """A fitted pipeline, its files and signature, and the rows it was fitted on."""

    pipeline: Any
    x: np.ndarray[Any, Any]
    signature: dict[str, Any]
    skops: Path
    onnx: Path | None


def numeric_pipeline(estimator: Any, width: int) -> Pipeline:
    """Impute and scale, then the estimator: what training builds for numeric features."""
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                list(range(width)),
            )
        ],
        sparse_threshold=0.0,
    )
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def export_onnx(
    pipeline: Any, width: int, classifier: bool, path: Path, zipmap: bool = False
) -> Path:
    """As ``training/artifacts.py`` exports: one float ``input`` tensor, no ZipMap."""
    final = pipeline.steps[-1][1]
    converted = to_onnx(
        pipeline,
        initial_types=[("input", FloatTensorType([None, width]))],
        options={id(final): {"zipmap": zipmap}} if classifier else None,
    )
    path.write_bytes(converted.SerializeToString())
    return path


def signature(
    features: list[str], dtypes: list[str], target: str, problem: str, classes: Any
) -> dict[str, Any]:
    return {
        "inputs": [{"name": n, "dtype": d} for n, d in zip(features, dtypes, strict=True)],
        "target": {"name": target, "dtype": "String" if problem == "classification" else "Float64"},
        "problem": problem,
        "classes": None
        if classes is None
        else [c.item() if hasattr(c, "item") else c for c in classes],
    }


def _save(
    directory: Path, name: str, pipeline: Any, x: Any, sig: dict[str, Any], onnx: bool
) -> Trained:
    skops_path = directory / f"{name}.skops"
    sio.dump(pipeline, skops_path)
    onnx_path = (
        export_onnx(
            pipeline, x.shape[1], sig["problem"] == "classification", directory / f"{name}.onnx"
        )
        if onnx
        else None
    )
    return Trained(pipeline, x, sig, skops_path, onnx_path)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def iris_lr(models_dir: Path) -> Trained:
    """Logistic regression on iris with string labels."""
    x, y = load_iris(return_X_y=True)
    pipeline = numeric_pipeline(LogisticRegression(max_iter=500), 4).fit(x, SPECIES[y])
    sig = signature(IRIS_FEATURES, ["Float64"] * 4, "species", "classification", pipeline.classes_)
    return _save(models_dir, "iris_lr", pipeline, x, sig, onnx=True)


@pytest.fixture(scope="session")
def iris_rf(models_dir: Path) -> Trained:
    """A random forest on iris with integer labels."""
    x, y = load_iris(return_X_y=True)
    estimator = RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0)
    pipeline = numeric_pipeline(estimator, 4).fit(x, y)
    sig = signature(IRIS_FEATURES, ["Float64"] * 4, "species", "classification", pipeline.classes_)
    return _save(models_dir, "iris_rf", pipeline, x, sig, onnx=True)


@pytest.fixture(scope="session")
def iris_ridge(models_dir: Path) -> Trained:
    """A classifier without probabilities (its ONNX second output holds decision scores)."""
    x, y = load_iris(return_X_y=True)
    pipeline = numeric_pipeline(RidgeClassifier(), 4).fit(x, SPECIES[y])
    sig = signature(IRIS_FEATURES, ["Float64"] * 4, "species", "classification", pipeline.classes_)
    return _save(models_dir, "iris_ridge", pipeline, x, sig, onnx=True)


@pytest.fixture(scope="session")
def diabetes_rf(models_dir: Path) -> Trained:
    """A random forest regressor on diabetes (10 features, some declared Int64)."""
    bunch = load_diabetes()
    x, y = bunch.data, bunch.target
    estimator = RandomForestRegressor(n_estimators=15, max_depth=5, random_state=0)
    pipeline = numeric_pipeline(estimator, 10).fit(x, y)
    names = list(bunch.feature_names)
    dtypes = ["Float64"] * 9 + ["Int64"]
    sig = signature(names, dtypes, "progression", "regression", None)
    return _save(models_dir, "diabetes_rf", pipeline, x, sig, onnx=True)


MIXED_FEATURES = ["size", "colour", "fresh"]


@pytest.fixture(scope="session")
def mixed(models_dir: Path) -> Trained:
    """Numeric, string and boolean features: an object matrix, skops only (like training)."""
    rng = np.random.default_rng(0)
    n = 120
    size = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    fresh = rng.random(n) > 0.5
    x = np.empty((n, 3), dtype=object)
    x[:, 0], x[:, 1], x[:, 2] = size, colour.tolist(), fresh.tolist()
    y = np.where((size > 0) & (colour != "blue"), "good", "bad").astype(object)
    preprocess = ColumnTransformer(
        [
            ("numeric", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), [0]),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [1, 2]),
        ],
        sparse_threshold=0.0,
    )
    pipeline = Pipeline([("preprocess", preprocess), ("model", LogisticRegression())]).fit(x, y)
    sig = signature(
        MIXED_FEATURES,
        ["Float64", "String", "Boolean"],
        "quality",
        "classification",
        pipeline.classes_,
    )
    return _save(models_dir, "mixed", pipeline, x, sig, onnx=False)
