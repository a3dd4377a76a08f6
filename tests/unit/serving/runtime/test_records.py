"""Predict bodies (``instances`` records or lists, ``dataframe_split``) checked against the
signature: every valid form gives the same matrix, every bad one a message that says where."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from armillary.contracts.training import Signature
from armillary.serving.runtime import BadInput, decode_records
from armillary.serving.runtime.features import columns_of

NUMERIC = Signature.model_validate(
    {
        "inputs": [
            {"name": "a", "dtype": "Float64"},
            {"name": "b", "dtype": "Int64", "imputed": True},
            {"name": "c", "dtype": "Float32"},
        ],
        "target": {"name": "y", "dtype": "String"},
        "problem": "classification",
        "classes": ["n", "p"],
    }
)
MIXED = Signature.model_validate(
    {
        "inputs": [
            {"name": "size", "dtype": "Float64", "imputed": True},
            {"name": "colour", "dtype": "String", "imputed": True},
            {"name": "fresh", "dtype": "Boolean", "nullable": True},
        ],
        "target": {"name": "quality", "dtype": "String"},
        "problem": "classification",
        "classes": ["bad", "good"],
    }
)


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [{"a": 1.5, "b": 2, "c": -3}, {"c": 0.25, "b": None, "a": 4}]},
        {"instances": [[1.5, 2, -3], [4, None, 0.25]]},
        {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1.5, 2, -3], [4, None, 0.25]]}},
        {
            "dataframe_split": {
                "index": [7, 8],
                "columns": ["c", "a", "b"],
                "data": [[-3, 1.5, 2], [0.25, 4, None]],
            }
        },
        # Keys beside the rows (a routing key) are the caller's business.
        {"instances": [[1.5, 2, -3], [4, None, 0.25]], "key": "customer-1"},
    ],
)
def test_valid_forms_give_the_float_matrix_in_signature_order(body: Any) -> None:
    rows = decode_records(body, NUMERIC)
    assert rows.dtype == np.float64
    assert rows.shape == (2, 3)
    assert rows[0].tolist() == [1.5, 2.0, -3.0]
    assert rows[1, 0] == 4.0
    assert math.isnan(rows[1, 1])  # null is missing: the pipeline imputes it
    assert rows[1, 2] == 0.25


def test_string_and_boolean_features_give_an_object_matrix() -> None:
    body = {
        "instances": [
            {"size": 1, "colour": "red", "fresh": True},
            {"size": None, "colour": None, "fresh": None},
        ]
    }
    rows = decode_records(body, MIXED)
    assert rows.dtype == object
    assert rows[0].tolist() == [1.0, "red", True]
    assert type(rows[0, 0]) is float
    assert math.isnan(rows[1, 0])
    assert rows[1, 1:].tolist() == [None, None]
    split = {
        "dataframe_split": {"columns": ["fresh", "size", "colour"], "data": [[False, 2.5, "blue"]]}
    }
    assert decode_records(split, MIXED).tolist() == [[2.5, "blue", False]]


def _refused(body: Any, signature: Signature = NUMERIC, **kwargs: Any) -> str:
    with pytest.raises(BadInput) as refused:
        decode_records(body, signature, **kwargs)
    assert refused.value.status == 422
    return str(refused.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([[1, 2, 3]], "must be a JSON object"),
        ({"rows": [[1, 2, 3]]}, "neither of instances and dataframe_split"),
        (
            {"instances": [[1, 2, 3]], "dataframe_split": {"columns": [], "data": []}},
            "both of instances and dataframe_split",
        ),
        ({"instances": {"a": 1}}, "instances must be a list of rows, got an object"),
        ({"instances": []}, "instances is empty"),
        # wrong shapes
        (
            {"instances": [[1, 2]]},
            "instances[0] has 2 values; the model takes 3 in this order: a, b, c",
        ),
        ({"instances": [[1, 2, 3], [1, 2, 3, 4]]}, "instances[1] has 4 values"),
        ({"instances": [[1, 2, 3], {"a": 1, "b": 2, "c": 3}]}, "instances[1] must be a list"),
        ({"instances": [{"a": 1, "b": 2, "c": 3}, [1, 2, 3]]}, "instances[1] must be an object"),
        (
            {"instances": [1, 2, 3]},
            "instances[0] must be an object of column: value or a list of values, got a number",
        ),
        # missing and extra columns
        ({"instances": [{"a": 1, "b": 2}]}, "instances[0] has no column 'c'"),
        (
            {"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]},
            "instances[0] has unknown column(s) 'd'",
        ),
        # wrong types
        ({"instances": [[1, "2", 3]]}, "instances[0] (column 'b') must be a number, got a string"),
        (
            {"instances": [[1, 2, True]]},
            "instances[0] (column 'c') must be a number, got a boolean",
        ),
        ({"instances": [[1, [2], 3]]}, "instances[0] (column 'b') must be a number, got a list"),
        (
            {"instances": [{"a": {"v": 1}, "b": 2, "c": 3}]},
            "instances[0] (column 'a') must be a number, got an object",
        ),
        (
            {"instances": [[1, 2, 3], [1, 2, float("inf")]]},
            "instances[1] (column 'c') must be a finite",
        ),
        ({"instances": [[1, 10**400, 3]]}, "too large"),
        # dataframe_split
        ({"dataframe_split": [[1, 2, 3]]}, "dataframe_split must be an object"),
        (
            {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3]], "dtypes": {}}},
            "unknown key(s) 'dtypes'",
        ),
        ({"dataframe_split": {"columns": "a,b,c", "data": [[1, 2, 3]]}}, "columns must be a list"),
        (
            {"dataframe_split": {"columns": ["a", "b", "c"], "data": {"0": [1, 2, 3]}}},
            "data must be a list",
        ),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}, "no column(s) 'c'"),
        (
            {"dataframe_split": {"columns": ["a", "b", "c", "z"], "data": [[1, 2, 3, 4]]}},
            "unknown column(s) 'z'",
        ),
        (
            {"dataframe_split": {"columns": ["a", "b", "c", "a"], "data": [[1, 2, 3, 4]]}},
            "repeats 'a'",
        ),
        (
            {"dataframe_split": {"columns": ["a", "b", "c"], "data": []}},
            "dataframe_split.data is empty",
        ),
        (
            {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3], [1, 2]]}},
            "dataframe_split.data[1] must be a list of 3 values (one per column), got 2 values",
        ),
        (
            {"dataframe_split": {"columns": ["c", "b", "a"], "data": [[1, 2, "x"]]}},
            "dataframe_split.data[0] (column 'a') must be a number, got a string",
        ),
    ],
)
def test_bad_bodies_are_refused_with_a_message_naming_the_place(body: Any, message: str) -> None:
    assert message in _refused(body)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"size": "big", "colour": "red", "fresh": True},
            "(column 'size') must be a number, got a string",
        ),
        (
            {"size": 1, "colour": 3, "fresh": True},
            "(column 'colour') must be a string, got a number",
        ),
        (
            {"size": 1, "colour": "red", "fresh": "yes"},
            "(column 'fresh') must be a boolean, got a string",
        ),
        (
            {"size": 1, "colour": "red", "fresh": 1},
            "(column 'fresh') must be a boolean, got a number",
        ),
        (
            {"size": float("-inf"), "colour": "red", "fresh": True},
            "(column 'size') must be a finite",
        ),
    ],
)
def test_object_features_are_type_checked(row: dict[str, Any], message: str) -> None:
    assert message in _refused({"instances": [row]}, MIXED)


def test_too_many_rows_are_refused_before_they_are_read() -> None:
    body = {"instances": [[1, 2, 3]] * 3}
    assert decode_records(body, NUMERIC, max_rows=3).shape == (3, 3)
    assert "instances has 3 rows; at most 2" in _refused(body, max_rows=2)
    split = {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3]] * 3}}
    assert "at most 2" in _refused(split, max_rows=2)


def test_long_feature_lists_are_shortened_in_messages() -> None:
    wide = Signature.model_validate(
        {
            "inputs": [{"name": f"f{i}", "dtype": "Float64"} for i in range(40)],
            "target": {"name": "y", "dtype": "Float64"},
            "problem": "regression",
        }
    )
    message = _refused({"instances": [[1.0]]}, wide)
    assert "f11, … (28 more)" in message
    assert "f12" not in message


def test_the_columns_of_a_signature_are_worked_out_once_per_signature_object() -> None:
    first = columns_of(NUMERIC)
    assert columns_of(NUMERIC) is first
    same_content = Signature.model_validate(NUMERIC.model_dump())
    assert columns_of(same_content) is not first
    assert columns_of(same_content) == first
