"""Tables to arrays, and the preprocessing + estimator pipeline built from the params."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder

from armillary.contracts.training import TrainParams
from armillary.training.estimators import build_estimator, build_pipeline, check_labels
from armillary.training.tabular import TrainingError, prepare


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "size": [1.0, 2.0, None, 4.0, 5.0, 6.0, 7.0, 8.0],
            "count": [1, 2, 3, 4, 5, 6, 7, 8],
            "colour": ["red", "blue", "red", None, "blue", "red", "blue", "red"],
            "flag": [True, False, True, False, True, False, True, False],
            "label": ["yes", "no", "yes", "no", "yes", "no", "yes", None],
        }
    )


def _spec(**extra: object) -> TrainParams:
    return TrainParams.model_validate(
        {"input": "load", "target": "label", "estimator": "LogisticRegression", **extra}
    )


def test_string_and_boolean_columns_are_categorical_and_null_targets_dropped() -> None:
    data = prepare(_frame(), _spec())
    assert [f.name for f in data.features] == ["size", "count", "colour", "flag"]
    assert data.categorical == [2, 3]
    assert len(data.y) == 7
    assert data.x.dtype == object
    assert list(data.y[:2]) == ["yes", "no"]


def test_the_pipeline_imputes_scales_encodes_and_keeps_string_classes() -> None:
    spec = _spec(preprocessing={"impute": "mean", "scale": "minmax"})
    data = prepare(_frame(), spec)
    pipeline = build_pipeline(
        spec.estimator,
        {"C": 2.0},
        n_features=4,
        categorical=data.categorical,
        preprocessing=spec.preprocessing,
        seed=0,
    ).fit(data.x, data.y)
    pre = pipeline.named_steps["preprocess"]
    numeric = pre.named_transformers_["numeric"]
    assert isinstance(numeric.named_steps["impute"], SimpleImputer)
    assert numeric.named_steps["impute"].strategy == "mean"
    assert isinstance(numeric.named_steps["scale"], MinMaxScaler)
    encoder = pre.named_transformers_["categorical"]
    assert isinstance(encoder, OneHotEncoder)
    assert encoder.handle_unknown == "ignore"
    assert pipeline.named_steps["model"].C == 2.0
    assert list(pipeline.classes_) == ["no", "yes"]
    # An unseen category at prediction time is ignored, not an error.
    unseen = np.array([[3.0, 3.0, "green", True]], dtype=object)
    assert pipeline.predict(unseen)[0] in {"yes", "no"}


def test_no_one_hot_means_ordinal_codes_and_none_means_passthrough() -> None:
    spec = _spec(preprocessing={"impute": "none", "scale": "none", "one_hot": False})
    data = prepare(_frame().drop_nulls("size"), spec)
    pipeline = build_pipeline(
        "DecisionTreeClassifier",
        {},
        n_features=4,
        categorical=data.categorical,
        preprocessing=spec.preprocessing,
        seed=0,
    ).fit(data.x, data.y)
    pre = pipeline.named_steps["preprocess"]
    assert pre.transformers[0][:2] == ("numeric", "passthrough")
    assert isinstance(pre.named_transformers_["categorical"], OrdinalEncoder)


def test_declared_categorical_columns_and_refusals() -> None:
    data = prepare(_frame(), _spec(preprocessing={"categorical": ["count", "colour", "flag"]}))
    assert data.categorical == [1, 2, 3]
    with pytest.raises(TrainingError, match="must be among the categorical"):
        prepare(_frame(), _spec(preprocessing={"categorical": ["count"]}))
    with pytest.raises(TrainingError, match="unsupported feature type"):
        prepare(_frame().with_columns(pl.lit(None, pl.Date).alias("day")), _spec())
    with pytest.raises(TrainingError, match="regression target must be numeric"):
        prepare(_frame(), _spec(estimator="Ridge"))


def test_estimators_are_seeded_unless_told_otherwise() -> None:
    assert build_estimator("RandomForestClassifier", {}, 7).random_state == 7
    assert build_estimator("RandomForestClassifier", {"random_state": 3}, 7).random_state == 3
    assert build_estimator("LGBMClassifier", {}, 0).verbose == -1
    with pytest.raises(TrainingError):
        build_estimator("os.system", {}, 0)


def test_xgboost_needs_encoded_labels() -> None:
    check_labels("XGBClassifier", np.array([0, 1, 2, 1]))
    check_labels("RandomForestClassifier", np.array(["a", "b"], dtype=object))
    with pytest.raises(TrainingError, match="integer class labels"):
        check_labels("XGBClassifier", np.array(["a", "b"], dtype=object))
