"""Nulls in predict input: refused (naming the row and column) where the signature says the
model takes none, taken where the column is nullable or the pipeline imputes it; training
records which columns its pipeline imputes."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest

from armillary.contracts.training import Signature, TrainParams
from armillary.serving.runtime import BadInput, decode_records, decode_v2
from armillary.training.tabular import prepare, signature


def _signature(*inputs: dict[str, Any]) -> Signature:
    return Signature.model_validate(
        {
            "inputs": list(inputs),
            "target": {"name": "y", "dtype": "Float64"},
            "problem": "regression",
        }
    )


# As an uploaded model's signature says it: no nullable or imputed flags.
STRICT = _signature({"name": "a", "dtype": "Float64"}, {"name": "b", "dtype": "Int64"})
STRICT_MIXED = _signature(
    {"name": "size", "dtype": "Float64"},
    {"name": "colour", "dtype": "String"},
    {"name": "fresh", "dtype": "Boolean"},
)


def _refused(decode: Any, body: Any, signature: Signature) -> str:
    with pytest.raises(BadInput) as refused:
        decode(body, signature)
    assert refused.value.status == 422
    return refused.value.detail


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"instances": [{"a": 1.0, "b": 2}, {"a": 3.0, "b": None}]}, "instances[1]"),
        ({"instances": [[1.0, 2], [3.0, None]]}, "instances[1]"),
        (
            {"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1.0], [None, 3.0]]}},
            "dataframe_split.data[1]",
        ),
    ],
)
def test_a_null_in_a_column_that_takes_none_is_refused_naming_row_and_column(
    body: Any, where: str
) -> None:
    detail = _refused(decode_records, body, STRICT)
    assert detail.startswith(f"{where} (column 'b') is null")
    assert "neither nullable nor imputed" in detail


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ({"size": None, "colour": "red", "fresh": True}, "size"),
        ({"size": 1.0, "colour": None, "fresh": True}, "colour"),
        ({"size": 1.0, "colour": "red", "fresh": None}, "fresh"),
    ],
)
def test_object_matrices_refuse_nulls_per_column(row: dict[str, Any], column: str) -> None:
    body = {"instances": [{"size": 2.0, "colour": "blue", "fresh": False}, row]}
    detail = _refused(decode_records, body, STRICT_MIXED)
    assert detail.startswith(f"instances[1] (column {column!r}) is null")


def test_nullable_and_imputed_columns_take_nulls() -> None:
    lenient = _signature(
        {"name": "a", "dtype": "Float64", "nullable": True},
        {"name": "b", "dtype": "Int64", "imputed": True},
    )
    rows = decode_records({"instances": [[None, None], [1.0, 2]]}, lenient)
    assert math.isnan(rows[0, 0])
    assert math.isnan(rows[0, 1])
    mixed = _signature(
        {"name": "size", "dtype": "Float64", "imputed": True},
        {"name": "colour", "dtype": "String", "imputed": True},
        {"name": "fresh", "dtype": "Boolean", "nullable": True},
    )
    rows = decode_records({"instances": [[None, None, None]]}, mixed)
    assert math.isnan(rows[0, 0])
    assert rows[0, 1:].tolist() == [None, None]


def test_only_the_columns_that_take_no_null_are_checked() -> None:
    half = _signature(
        {"name": "a", "dtype": "Float64", "imputed": True}, {"name": "b", "dtype": "Int64"}
    )
    assert math.isnan(decode_records({"instances": [[None, 1]]}, half)[0, 0])
    detail = _refused(decode_records, {"instances": [[None, 1], [2.0, None]]}, half)
    assert detail.startswith("instances[1] (column 'b') is null")


def _tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_v2_tensors_refuse_nulls_naming_row_and_column() -> None:
    matrix = {"inputs": [_tensor("input", [2, 2], "FP64", [1.0, 2.0, 3.0, None])]}
    detail = _refused(decode_v2, matrix, STRICT)
    assert detail.startswith("tensor 'input'[1] (column 'b') is null")
    per_feature = {
        "inputs": [
            _tensor("a", [2], "FP64", [None, 1.0]),
            _tensor("b", [2], "FP64", [1.0, 2.0]),
        ]
    }
    detail = _refused(decode_v2, per_feature, STRICT)
    assert detail.startswith("inputs[0] (column 'a') is null")
    strings = {
        "inputs": [
            _tensor("size", [1], "FP64", [1.0]),
            _tensor("colour", [1], "BYTES", [None]),
            _tensor("fresh", [1], "BOOL", [True]),
        ]
    }
    assert "(column 'colour') is null" in _refused(decode_v2, strings, STRICT_MIXED)


# -- what training records -------------------------------------------------------------------


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "size": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "gaps": [1.0, None, 3.0, 4.0, 5.0, 6.0],
            "colour": ["red", "blue", "red", "blue", "red", "blue"],
            "label": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
        }
    )


def _trained_signature(**extra: Any) -> Signature:
    spec = TrainParams.model_validate(
        {"input": "load", "target": "label", "estimator": "LinearRegression", **extra}
    )
    return signature(prepare(_frame(), spec), "regression", None)


def _flags(sig: Signature) -> dict[str, tuple[bool, bool]]:
    return {f.name: (f.nullable, f.imputed) for f in sig.inputs}


def test_training_marks_imputed_and_nullable_columns() -> None:
    assert _flags(_trained_signature()) == {
        "size": (False, True),
        "gaps": (True, True),
        "colour": (False, True),  # the encoder codes a missing category
    }
    assert _flags(_trained_signature(preprocessing={"impute": "none"})) == {
        "size": (False, False),
        "gaps": (True, False),  # the model was fitted on its nulls
        "colour": (False, True),
    }


def test_a_sagemaker_image_is_not_assumed_to_impute() -> None:
    sig = _trained_signature(
        backend="sagemaker",
        sagemaker={
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/train:1",
            "role_arn": "arn:aws:iam::123456789012:role/train",
            "bucket": "models-bucket",
        },
    )
    assert _flags(sig) == {
        "size": (False, False),
        "gaps": (True, False),
        "colour": (False, False),
    }


def test_serving_follows_the_signature_training_wrote() -> None:
    imputing = Signature.model_validate(_trained_signature().model_dump(mode="json"))
    rows = decode_records({"instances": [[None, None, None]]}, imputing)
    assert rows[0, 2] is None
    strict = Signature.model_validate(
        _trained_signature(preprocessing={"impute": "none"}).model_dump(mode="json")
    )
    detail = _refused(decode_records, {"instances": [[None, 1.0, "red"]]}, strict)
    assert detail.startswith("instances[0] (column 'size') is null")
    assert decode_records({"instances": [[1.0, None, None]]}, strict)[0, 2] is None
