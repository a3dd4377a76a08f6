"""From a Parquet table to the arrays a pipeline is fitted on, and the model's signature.

Features reach the pipeline as one 2-D NumPy array in signature order, so that evaluation and
serving rebuild it from the signature alone: ``float64`` when every feature is numeric, else an
``object`` array (numbers as floats, strings and booleans as themselves, nulls as ``None``
or NaN) whose columns the pipeline's ``ColumnTransformer`` picks by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from armillary.contracts.training import FeatureSpec, Problem, Signature, TrainParams
from armillary.kit import tabular
from armillary.kit.tabular import is_numeric


class TrainingError(Exception):
    """A training or evaluation task cannot proceed (bad input, unusable data)."""


@dataclass(frozen=True)
class Tabular:
    """A table as arrays: ``x`` in ``features`` order, ``y`` the target."""

    x: np.ndarray[Any, Any]
    y: np.ndarray[Any, Any]
    features: list[FeatureSpec]
    target: FeatureSpec
    categorical: list[int]
    rows: pl.DataFrame


def _is_supported(dtype: pl.DataType) -> bool:
    return (
        dtype.is_numeric()
        or dtype in (pl.String, pl.Boolean, pl.Categorical)
        or isinstance(dtype, pl.Enum)
    )


def feature_matrix(frame: pl.DataFrame, features: Sequence[FeatureSpec]) -> np.ndarray[Any, Any]:
    """The 2-D array of ``features`` (in that order) from ``frame``."""
    try:
        return tabular.feature_matrix(frame, features)
    except tabular.MissingColumns as exc:
        raise TrainingError(f"the table has no column(s) {exc}") from None


def prepare(frame: pl.DataFrame, spec: TrainParams) -> Tabular:
    """Checks the table against ``spec`` and turns it into arrays (rows without a target are
    dropped)."""
    if spec.target not in frame.columns:
        raise TrainingError(f"the table has no target column {spec.target!r}")
    names = spec.features or [c for c in frame.columns if c != spec.target]
    if not names:
        raise TrainingError("the table has no feature columns besides the target")
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise TrainingError(f"the table has no column(s) {', '.join(missing)}")
    unsupported = [f"{n} ({frame.schema[n]})" for n in names if not _is_supported(frame.schema[n])]
    if unsupported:
        raise TrainingError(
            "unsupported feature type(s): "
            + ", ".join(unsupported)
            + "; convert them to numbers or strings upstream (a transform task)"
        )
    frame = frame.select([*names, spec.target]).filter(pl.col(spec.target).is_not_null())
    if frame.height < 2:
        raise TrainingError("the table has fewer than 2 rows with a target value")
    features = [
        FeatureSpec(name=n, dtype=str(frame.schema[n]), nullable=_has_missing(frame, n))
        for n in names
    ]
    declared = spec.preprocessing.categorical
    if declared is not None:
        unknown = [c for c in declared if c not in names]
        if unknown:
            raise TrainingError(f"categorical column(s) not among the features: {unknown}")
        categorical = [names.index(c) for c in declared]
    else:
        categorical = [i for i, f in enumerate(features) if not is_numeric(f.dtype)]
    non_numeric = {i for i, f in enumerate(features) if not is_numeric(f.dtype)}
    if not non_numeric <= set(categorical):
        raise TrainingError("string/boolean features must be among the categorical columns")
    features = _with_imputation(features, categorical, spec)
    target = FeatureSpec(name=spec.target, dtype=str(frame.schema[spec.target]))
    y = target_array(frame, spec.target, spec.problem)
    return Tabular(feature_matrix(frame, features), y, features, target, categorical, frame)


def _has_missing(frame: pl.DataFrame, name: str) -> bool:
    column = frame.get_column(name)
    return column.null_count() > 0 or (column.dtype.is_float() and bool(column.is_nan().any()))


def _with_imputation(
    features: list[FeatureSpec], categorical: Sequence[int], spec: TrainParams
) -> list[FeatureSpec]:
    """Marks the inputs the pipeline fills in when missing (serving takes nulls there):
    numbers when an imputer runs, categories always (the encoders code a missing one). A
    SageMaker image's pipeline is its author's, so nothing is assumed of it."""
    if spec.backend != "local":
        return features
    imputes_numbers = spec.preprocessing.impute != "none"
    coded = set(categorical)
    return [
        feature.model_copy(update={"imputed": index in coded or imputes_numbers})
        for index, feature in enumerate(features)
    ]


def target_array(frame: pl.DataFrame, name: str, problem: Problem) -> np.ndarray[Any, Any]:
    """The target column as the estimator sees it: the labels themselves for classification
    (strings stay strings), floats for regression."""
    column = frame.get_column(name)
    if problem == "regression":
        if not column.dtype.is_numeric():
            raise TrainingError(f"a regression target must be numeric; {name} is {column.dtype}")
        return column.cast(pl.Float64).to_numpy()
    if column.dtype.is_float():
        return column.to_numpy()
    if column.dtype.is_integer() or column.dtype == pl.Boolean:
        return column.to_numpy()
    return np.asarray(column.cast(pl.String).to_list(), dtype=object)


def signature(tabular: Tabular, problem: Problem, classes: Sequence[Any] | None) -> Signature:
    return Signature(
        inputs=tabular.features,
        target=tabular.target,
        problem=problem,
        classes=[plain(c) for c in classes] if classes is not None else None,
    )


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python value JSON can carry."""
    return value.item() if isinstance(value, np.generic) else value
