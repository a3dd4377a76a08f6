"""Open Inference Protocol v2 JSON: request tensors decoded against the signature, responses
in the protocol's schema."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict
from tests.unit.serving.runtime.conftest import IRIS_FEATURES, Trained

from armillary.contracts.training import Signature
from armillary.serving.runtime import (
    MATRIX_INPUT,
    BadInput,
    Prediction,
    decode_v2,
    encode_v2,
    load_model,
)

NUMERIC = Signature.model_validate(
    {
        "inputs": [
            {"name": "a", "dtype": "Float64", "imputed": True},
            {"name": "b", "dtype": "Int64"},
        ],
        "target": {"name": "y", "dtype": "Float64"},
        "problem": "regression",
    }
)
MIXED = Signature.model_validate(
    {
        "inputs": [
            {"name": "size", "dtype": "Float64"},
            {"name": "colour", "dtype": "String"},
            {"name": "fresh", "dtype": "Boolean"},
        ],
        "target": {"name": "quality", "dtype": "String"},
        "problem": "classification",
        "classes": ["bad", "good"],
    }
)


def _tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


@pytest.mark.parametrize(
    "inputs",
    [
        [_tensor("input", [2, 2], "FP32", [1.5, 2, 3, 4])],
        [_tensor("input", [2, 2], "FP64", [[1.5, 2], [3, 4]])],
        [_tensor("a", [2], "FP32", [1.5, 3]), _tensor("b", [2], "INT64", [2, 4])],
        [_tensor("b", [2, 1], "INT32", [[2], [4]]), _tensor("a", [2, 1], "FP64", [1.5, 3.0])],
    ],
)
def test_matrix_and_per_feature_tensors_give_the_same_rows(inputs: list[dict[str, Any]]) -> None:
    rows = decode_v2({"id": "r1", "inputs": inputs}, NUMERIC)
    assert rows.dtype == np.float64
    assert rows.tolist() == [[1.5, 2.0], [3.0, 4.0]]


def test_integer_matrices_and_missing_floats() -> None:
    assert decode_v2({"inputs": [_tensor("input", [1, 2], "INT64", [7, 8])]}, NUMERIC).tolist() == [
        [7.0, 8.0]
    ]
    rows = decode_v2({"inputs": [_tensor("input", [1, 2], "FP64", [None, 8])]}, NUMERIC)
    assert math.isnan(rows[0, 0])


def test_string_and_boolean_features_come_as_bytes_and_bool_tensors() -> None:
    body = {
        "inputs": [
            _tensor("size", [2], "FP64", [1.0, 2.5]),
            _tensor("colour", [2], "BYTES", ["red", "blue"]),
            _tensor("fresh", [2, 1], "BOOL", [[True], [False]]),
        ]
    }
    rows = decode_v2(body, MIXED)
    assert rows.dtype == object
    assert rows.tolist() == [[1.0, "red", True], [2.5, "blue", False]]


def _refused(body: Any, signature: Signature = NUMERIC, **kwargs: Any) -> str:
    with pytest.raises(BadInput) as refused:
        decode_v2(body, signature, **kwargs)
    return str(refused.value)


MATRIX = "tensor 'input'"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object with an `inputs` list"),
        ({"instances": [[1, 2]]}, "`inputs` must be a non-empty list"),
        ({"inputs": []}, "`inputs` must be a non-empty list"),
        ({"inputs": [{"shape": [1, 2]}]}, "inputs[0] must be a tensor object with a `name`"),
        (
            {"inputs": [_tensor("a", [1], "FP64", [1]), _tensor("a", [1], "FP64", [1])]},
            "tensor 'a' is given twice",
        ),
        ({"inputs": [_tensor("x", [1, 2], "FP64", [1, 2])]}, "unknown input tensor(s) 'x'"),
        ({"inputs": [_tensor("a", [1], "FP64", [1])]}, "no tensor for feature(s) 'b'"),
        # wrong shapes
        (
            {"inputs": [_tensor("input", [1, 3], "FP64", [1, 2, 3])]},
            "must have shape [n, 2], got [1, 3]",
        ),
        ({"inputs": [_tensor("input", [2], "FP64", [1, 2])]}, "must have shape [n, 2], got [2]"),
        ({"inputs": [_tensor("input", [0, 2], "FP64", [])]}, f"{MATRIX} is empty"),
        (
            {"inputs": [_tensor("input", [2, 2], "FP64", [1, 2, 3])]},
            "has 3 values; shape [2, 2] needs 4",
        ),
        (
            {"inputs": [_tensor("input", [2, 2], "FP64", [[1, 2, 3], [4]])]},
            "nested `data` does not match",
        ),
        (
            {"inputs": [_tensor("input", [1, 2], "FP64", [[1, 2], [3, 4]])]},
            "nested `data` does not match",
        ),
        ({"inputs": [_tensor("input", [-1, 2], "FP64", [1, 2])]}, "needs a `shape`"),
        ({"inputs": [_tensor("input", [True, 2], "FP64", [1, 2])]}, "needs a `shape`"),
        (
            {
                "inputs": [
                    _tensor("a", [2, 2], "FP64", [1, 2, 3, 4]),
                    _tensor("b", [2], "INT64", [1, 2]),
                ]
            },
            "tensor 'a' must have shape [n] or [n, 1], got [2, 2]",
        ),
        (
            {"inputs": [_tensor("a", [2], "FP64", [1, 2]), _tensor("b", [3], "INT64", [1, 2, 3])]},
            "tensor 'b' has 3 rows; 'a' has 2",
        ),
        # wrong types
        (
            {"inputs": [_tensor("input", [1, 2], "BYTES", ["1", "2"])]},
            "must be FP32, FP64 or INT64, got BYTES",
        ),
        (
            {"inputs": [_tensor("input", [1, 2], "FP32", [1, "2"])]},
            "value 1 must be a number, got a string",
        ),
        (
            {"inputs": [_tensor("input", [1, 2], "FP32", [True, 2])]},
            "value 0 must be a number, got a boolean",
        ),
        (
            {"inputs": [_tensor("input", [1, 2], "INT64", [1, 2.5])]},
            "value 1 must be an integer, got a number",
        ),
        (
            {"inputs": [_tensor("input", [1, 2], "INT64", [1, None])]},
            "value 1 must be an integer, got null",
        ),
        (
            {"inputs": [_tensor("a", [1], "BYTES", ["1"]), _tensor("b", [1], "INT64", [1])]},
            "tensor 'a' is a numeric feature: send FP32, FP64 or INT64, not BYTES",
        ),
        (
            {"inputs": [_tensor("input", [1, 2], "FP64", "1,2")]},
            "`data` must be a list, got a string",
        ),
        ({"inputs": [{"name": "input", "shape": [1, 2], "data": [1, 2]}]}, "needs a `datatype`"),
        ({"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP64"}]}, "has no `data`"),
        (
            {"inputs": [{**_tensor("input", [1, 2], "FP64", [1, 2]), "contents": {}}]},
            "unknown key(s) 'contents'",
        ),
        (
            {
                "inputs": [
                    {**_tensor("input", [1, 2], "FP32", []), "parameters": {"binary_data_size": 8}}
                ]
            },
            "is binary; only JSON tensor data is accepted",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_message_naming_the_tensor(body: Any, message: str) -> None:
    assert message in _refused(body)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            [_tensor("input", [1, 3], "FP64", [1, 2, 3])],
            "has string or boolean features: send one tensor per feature",
        ),
        (
            [
                _tensor("size", [1], "FP64", [1]),
                _tensor("colour", [1], "FP64", [1]),
                _tensor("fresh", [1], "BOOL", [True]),
            ],
            "tensor 'colour' is a string feature: send BYTES, not FP64",
        ),
        (
            [
                _tensor("size", [1], "FP64", [1]),
                _tensor("colour", [1], "BYTES", ["red"]),
                _tensor("fresh", [1], "INT64", [1]),
            ],
            "tensor 'fresh' is a boolean feature: send BOOL, not INT64",
        ),
        (
            [
                _tensor("size", [1], "FP64", [1]),
                _tensor("colour", [1], "BYTES", [5]),
                _tensor("fresh", [1], "BOOL", [True]),
            ],
            "inputs[0] (column 'colour') must be a string, got a number",
        ),
    ],
)
def test_mixed_signatures_need_typed_tensors_per_feature(
    inputs: list[dict[str, Any]], message: str
) -> None:
    assert message in _refused({"inputs": inputs}, MIXED)


def test_too_many_rows_are_refused() -> None:
    body = {"inputs": [_tensor("input", [3, 2], "FP64", [1, 2] * 3)]}
    assert decode_v2(body, NUMERIC, max_rows=3).shape == (3, 2)
    assert "has 3 rows; at most 2" in _refused(body, max_rows=2)


# -- responses -------------------------------------------------------------------------------


class ResponseOutput(BaseModel):
    """``$response_output`` of the KServe v2 protocol."""

    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceResponse(BaseModel):
    """``$inference_response`` of the KServe v2 protocol."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


_PYTHON_TYPES = {"BYTES": str, "BOOL": bool, "INT64": int, "FP64": float}


def _valid(response: dict[str, Any]) -> dict[str, ResponseOutput]:
    parsed = InferenceResponse.model_validate(response)
    for output in parsed.outputs:
        assert len(output.data) == math.prod(output.shape)
        assert {type(v) for v in output.data} <= {_PYTHON_TYPES[output.datatype]}
    return {o.name: o for o in parsed.outputs}


def test_a_classifier_response_has_labels_and_probabilities(iris_lr: Trained) -> None:
    assert iris_lr.onnx is not None
    model = load_model("v1", iris_lr.onnx, "onnx", iris_lr.signature)
    body = {"inputs": [_tensor(MATRIX_INPUT, [3, 4], "FP32", iris_lr.x[[0, 60, 149]].tolist())]}
    rows = decode_v2(body, model.signature)
    response = encode_v2(model.predict(rows), "demo.iris", "3", "req-1")
    assert response["model_name"] == "demo.iris"
    assert response["model_version"] == "3"
    assert response["id"] == "req-1"
    outputs = _valid(response)
    assert outputs["predictions"].datatype == "BYTES"
    assert outputs["predictions"].shape == [3]
    assert outputs["predictions"].data == ["setosa", "versicolor", "virginica"]
    probabilities = outputs["probabilities"]
    assert probabilities.datatype == "FP64"
    assert probabilities.shape == [3, 3]
    assert probabilities.parameters == {"classes": ["setosa", "versicolor", "virginica"]}
    by_row = np.asarray(probabilities.data).reshape(3, 3)
    assert np.allclose(by_row.sum(axis=1), 1.0, atol=1e-5)
    assert by_row.argmax(axis=1).tolist() == [0, 1, 2]


def test_per_feature_requests_reach_the_same_answer(iris_lr: Trained) -> None:
    x = iris_lr.x[:5]
    per_feature = {
        "inputs": [_tensor(n, [5], "FP64", x[:, i].tolist()) for i, n in enumerate(IRIS_FEATURES)]
    }
    assert (
        decode_v2(per_feature, Signature.model_validate(iris_lr.signature)).tolist() == x.tolist()
    )


@pytest.mark.parametrize(
    ("outputs", "datatype"),
    [
        ([1, 0, 2], "INT64"),
        ([1.5, 2.0, -3.25], "FP64"),
        ([True, False, True], "BOOL"),
        (["a", "b", "c"], "BYTES"),
    ],
)
def test_prediction_datatypes_follow_the_values(outputs: list[Any], datatype: str) -> None:
    response = encode_v2(Prediction(outputs, None), "p.d", "1", None)
    assert "id" not in response
    found = _valid(response)
    assert list(found) == ["predictions"]
    assert found["predictions"].datatype == datatype
    assert found["predictions"].data == outputs
