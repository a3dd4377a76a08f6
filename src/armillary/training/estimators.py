"""Allow-listed estimators inside their preprocessing pipeline.

Only names of :data:`armillary.contracts.training.ESTIMATORS` are ever imported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from armillary.contracts.training import ESTIMATORS, Preprocessing, estimator_class

from .preprocess import build_preprocessor
from .tabular import TrainingError

PREPROCESS = "preprocess"
MODEL = "model"


def build_estimator(name: str, hyperparameters: Mapping[str, Any], seed: int) -> Any:
    """An unfitted estimator with ``hyperparameters``; seeded when it takes a seed and none
    was given, so that the same job trains the same model."""
    info = ESTIMATORS.get(name)
    if info is None:
        raise TrainingError(f"unknown estimator {name!r}")
    try:
        cls = estimator_class(info)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    estimator = cls(**dict(hyperparameters))
    known = estimator.get_params(deep=False)
    if "random_state" in known and "random_state" not in hyperparameters:
        estimator.set_params(random_state=seed)
    if info.target.startswith("lightgbm:") and "verbose" not in hyperparameters:
        estimator.set_params(verbose=-1)  # LightGBM's per-iteration chatter is not a log
    return estimator


def build_pipeline(
    name: str,
    hyperparameters: Mapping[str, Any],
    *,
    n_features: int,
    categorical: Sequence[int],
    preprocessing: Preprocessing,
    seed: int,
) -> Pipeline:
    """Preprocessing followed by the estimator."""
    return Pipeline(
        [
            (PREPROCESS, build_preprocessor(n_features, categorical, preprocessing)),
            (MODEL, build_estimator(name, hyperparameters, seed)),
        ]
    )


def check_labels(name: str, y: np.ndarray[Any, Any]) -> None:
    """XGBoost's classifier takes only the labels 0..n-1: say so before it fails obscurely."""
    if not ESTIMATORS[name].target.startswith("xgboost:") or ESTIMATORS[name].problem != (
        "classification"
    ):
        return
    classes = np.unique(y)
    if classes.dtype.kind not in "iu" or not np.array_equal(classes, np.arange(len(classes))):
        raise TrainingError(
            f"{name} needs integer class labels 0..{len(classes) - 1}; the target has "
            f"{[str(c) for c in classes[:10]]}: encode it upstream (a transform task)"
        )
