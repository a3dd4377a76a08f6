"""The preprocessing half of a training pipeline, per the task's ``preprocessing`` params."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

from armillary.contracts.training import Preprocessing

NUMERIC = "numeric"
CATEGORICAL = "categorical"


def build_preprocessor(
    n_features: int, categorical: Sequence[int], spec: Preprocessing
) -> ColumnTransformer:
    """Imputes and scales the numeric columns, encodes the categorical ones (by index)."""
    numeric = [i for i in range(n_features) if i not in set(categorical)]
    transformers: list[tuple[str, Any, list[int]]] = []
    if numeric:
        steps: list[tuple[str, Any]] = []
        if spec.impute != "none":
            steps.append(("impute", SimpleImputer(strategy=spec.impute)))
        if spec.scale == "standard":
            steps.append(("scale", StandardScaler()))
        elif spec.scale == "minmax":
            steps.append(("scale", MinMaxScaler()))
        transformers.append((NUMERIC, Pipeline(steps) if steps else "passthrough", numeric))
    if categorical:
        encoder: Any = (
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            if spec.one_hot
            # Trees split ordinal codes well; unknown and missing categories become -1.
            else OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
            )
        )
        transformers.append((CATEGORICAL, encoder, list(categorical)))
    # Dense output: every allow-listed estimator and the ONNX converters take it.
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def output_feature_names(preprocessor: Any, features: Sequence[str]) -> list[str] | None:
    """The names of the columns the estimator sees (after one-hot encoding), when known."""
    try:
        names = preprocessor.get_feature_names_out(list(features))
    except (AttributeError, ValueError, TypeError):
        return None
    return [str(n) for n in names]
