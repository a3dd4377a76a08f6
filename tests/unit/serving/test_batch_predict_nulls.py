"""batch_predict treats nulls as predict does: a null (or NaN) in an input the signature marks
neither nullable nor imputed fails the task naming the row and column, before any scoring."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from armillary.contracts.training import Signature
from armillary.serving.runtime import Prediction
from armillary.serving.tasks import ServingTaskError, predict_table


class _Sum:
    """A stand-in model: the sum of each row, counting the rows it was asked to score."""

    def __init__(self) -> None:
        self.scored = 0

    def predict(self, rows: np.ndarray[Any, Any]) -> Prediction:
        self.scored += len(rows)
        return Prediction(np.nansum(rows.astype(float), axis=1).tolist(), None)


def _signature(**flags: Any) -> Signature:
    return Signature.model_validate(
        {
            "inputs": [
                {"name": "a", "dtype": "Float64", **flags},
                {"name": "b", "dtype": "Int64"},
            ],
            "target": {"name": "y", "dtype": "Float64"},
            "problem": "regression",
        }
    )


def _score(frame: pl.DataFrame, signature: Signature, model: _Sum) -> pl.DataFrame:
    return predict_table(
        model, frame, signature, keep=list(frame.columns), probabilities=False, batch_rows=2
    )


@pytest.mark.parametrize(
    ("a", "b", "row", "column"),
    [
        ([1.0, 2.0, None], [1, 2, 3], 2, "a"),
        ([1.0, float("nan"), 3.0], [1, 2, 3], 1, "a"),
        ([1.0, 2.0, 3.0], [1, None, 3], 1, "b"),
    ],
)
def test_a_null_where_the_model_takes_none_fails_before_scoring(
    a: list[Any], b: list[Any], row: int, column: str
) -> None:
    model = _Sum()
    frame = pl.DataFrame({"a": a, "b": b}, schema={"a": pl.Float64, "b": pl.Int64})
    with pytest.raises(ServingTaskError) as refused:
        _score(frame, _signature(), model)
    assert str(refused.value).startswith(f"row {row} of the input table (column {column!r})")
    assert model.scored == 0


@pytest.mark.parametrize("flag", ["nullable", "imputed"])
def test_nulls_are_scored_where_the_signature_takes_them(flag: str) -> None:
    model = _Sum()
    frame = pl.DataFrame({"a": [1.0, None, 3.0], "b": [1, 2, 3]})
    result = _score(frame, _signature(**{flag: True}), model)
    assert result.get_column("prediction").to_list() == [2.0, 2.0, 6.0]
    assert model.scored == 3
