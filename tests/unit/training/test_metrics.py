"""Our metrics equal scikit-learn's own on the same predictions; better-than is direction-aware."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from armillary.training.metrics import is_better, score, summarise


def test_multiclass_metrics_are_macro_averages() -> None:
    x, y = load_iris(return_X_y=True)
    labels = np.array(["a", "b", "c"], dtype=object)[y]
    model = LogisticRegression(max_iter=1000).fit(x, labels)
    got = score(model, x, labels, "classification")
    predicted, proba = model.predict(x), model.predict_proba(x)
    assert got == pytest.approx(
        {
            "accuracy": skm.accuracy_score(labels, predicted),
            "precision": skm.precision_score(labels, predicted, average="macro"),
            "recall": skm.recall_score(labels, predicted, average="macro"),
            "f1": skm.f1_score(labels, predicted, average="macro"),
            "roc_auc": skm.roc_auc_score(labels, proba, multi_class="ovr", average="macro"),
            "log_loss": skm.log_loss(labels, proba),
        }
    )


def test_binary_metrics_are_of_the_positive_class() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(max_iter=5000).fit(x, y)
    got = score(model, x, y, "classification")
    predicted, proba = model.predict(x), model.predict_proba(x)
    assert got["f1"] == pytest.approx(skm.f1_score(y, predicted))
    assert got["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba))


def test_regression_metrics() -> None:
    x, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(x, y)
    predicted = model.predict(x)
    assert score(model, x, y, "regression") == pytest.approx(
        {
            "rmse": math.sqrt(skm.mean_squared_error(y, predicted)),
            "mae": skm.mean_absolute_error(y, predicted),
            "r2": skm.r2_score(y, predicted),
        }
    )


def test_uncomputable_metrics_are_left_out() -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    only_one_class = score(model, x[:10], y[:10], "classification")
    assert "roc_auc" not in only_one_class
    assert "accuracy" in only_one_class


def test_summarise_and_better() -> None:
    means, stds = summarise([{"rmse": 1.0, "r2": 0.5}, {"rmse": 3.0, "r2": 0.7}])
    assert means == pytest.approx({"rmse": 2.0, "r2": 0.6})
    assert stds == pytest.approx({"rmse": 1.0, "r2": 0.1})
    assert is_better("rmse", 1.0, 2.0)
    assert not is_better("rmse", 2.0, 1.0)
    assert is_better("f1", 0.9, 0.8)
    assert not is_better("f1", 0.8, 0.8)
    assert is_better("log_loss", 0.1, None)
    assert not is_better("f1", None, 0.1)
    assert not is_better("f1", float("nan"), 0.1)
