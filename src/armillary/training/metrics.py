"""Hold-out and cross-validation metrics of a fitted model (scikit-learn's implementations).

A metric that cannot be computed on the rows at hand (one class only, no probabilities) is
left out rather than reported as NaN: thresholds on it then fail closed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from armillary.contracts.training import LOWER_IS_BETTER, Problem


def default_metric(problem: Problem) -> str:
    return "f1" if problem == "classification" else "rmse"


def score(
    model: Any, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], problem: Problem
) -> dict[str, float]:
    """The metrics of ``model`` on rows ``x`` with true values ``y``."""
    predicted = model.predict(x)
    if problem == "regression":
        return regression_metrics(y, predicted)
    proba = model.predict_proba(x) if hasattr(model, "predict_proba") else None
    classes = list(getattr(model, "classes_", np.unique(y)))
    return classification_metrics(y, predicted, proba, classes)


def regression_metrics(y: Any, predicted: Any) -> dict[str, float]:
    values = {
        "rmse": skm.root_mean_squared_error(y, predicted),
        "mae": skm.mean_absolute_error(y, predicted),
        "r2": skm.r2_score(y, predicted) if len(y) > 1 else math.nan,
    }
    return _finite(values)


def classification_metrics(
    y: Any, predicted: Any, proba: Any | None, classes: Sequence[Any]
) -> dict[str, float]:
    """accuracy, precision, recall and f1 (binary: of the second class, scikit-learn's
    positive label; multiclass: macro), roc_auc (one-vs-rest macro) and log_loss."""
    binary = len(classes) == 2
    average: Any = "binary" if binary else "macro"
    extra: dict[str, Any] = {"pos_label": classes[1]} if binary else {"labels": list(classes)}
    values: dict[str, float] = {
        "accuracy": skm.accuracy_score(y, predicted),
        "precision": skm.precision_score(y, predicted, average=average, zero_division=0, **extra),
        "recall": skm.recall_score(y, predicted, average=average, zero_division=0, **extra),
        "f1": skm.f1_score(y, predicted, average=average, zero_division=0, **extra),
    }
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        try:
            if binary:
                values["roc_auc"] = skm.roc_auc_score(np.asarray(y) == classes[1], proba[:, 1])
            else:
                values["roc_auc"] = skm.roc_auc_score(
                    y, proba, multi_class="ovr", average="macro", labels=list(classes)
                )
        except ValueError:  # a class absent from these rows
            pass
        with contextlib.suppress(ValueError):
            values["log_loss"] = skm.log_loss(y, proba, labels=list(classes))
    return _finite(values)


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def summarise(folds: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard deviation of each metric computed on every fold."""
    names = set.intersection(*(set(f) for f in folds)) if folds else set()
    means = {n: float(np.mean([f[n] for f in folds])) for n in sorted(names)}
    stds = {n: float(np.std([f[n] for f in folds])) for n in sorted(names)}
    return means, stds


def is_better(metric: str, candidate: float | None, incumbent: float | None) -> bool:
    """Whether ``candidate`` strictly beats ``incumbent`` on ``metric`` (a missing candidate
    never does; a missing incumbent always loses)."""
    if candidate is None or not math.isfinite(candidate):
        return False
    if incumbent is None or not math.isfinite(incumbent):
        return True
    return candidate < incumbent if metric in LOWER_IS_BETTER else candidate > incumbent
