"""Open Inference Protocol (KServe v2) JSON tensors in and out.

A request carries either one matrix tensor named ``input`` of shape ``[n, k]`` (numeric
features in signature order), or one tensor per feature, named like it, of shape ``[n]`` or
``[n, 1]``. Tensor data may be flat (row-major, as the protocol and tritonclient send it) or
nested to the tensor's shape. Binary tensor data (the protocol's extension) is refused: JSON only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from armillary.contracts.training import Signature
from armillary.kit.lazy_import import lazy

from .errors import BadInput
from .features import (
    DEFAULT_MAX_ROWS,
    Columns,
    Kind,
    check_row_count,
    columns_of,
    describe,
    matrix_of,
)
from .model import Prediction

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

#: The name of the single ``[n, k]`` tensor form.
MATRIX_INPUT = "input"
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
NUMERIC_TYPES = FLOAT_TYPES | INT_TYPES
#: The v2 datatype a feature of each kind is sent as (numbers: any numeric type).
DATATYPES: dict[Kind, str] = {Kind.NUMBER: "FP64", Kind.BOOLEAN: "BOOL", Kind.STRING: "BYTES"}
_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})


def decode_v2(
    body: Any, signature: Signature, *, max_rows: int = DEFAULT_MAX_ROWS
) -> np.ndarray[Any, Any]:
    """The rows of a v2 inference request in signature order; :class:`BadInput` naming the
    tensor and what is wrong otherwise."""
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object with an `inputs` list of tensors")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadInput("`inputs` must be a non-empty list of tensors")
    columns = columns_of(signature)
    tensors: dict[str, dict[str, Any]] = {}
    for position, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadInput(f"inputs[{position}] must be a tensor object with a `name`")
        name = tensor["name"]
        if name in tensors:
            raise BadInput(f"tensor {name!r} is given twice")
        tensors[name] = tensor
    if len(tensors) == 1 and MATRIX_INPUT in tensors and MATRIX_INPUT not in columns.index:
        return _matrix(tensors[MATRIX_INPUT], columns, max_rows)
    return _per_feature(tensors, columns, max_rows)


def _matrix(tensor: dict[str, Any], columns: Columns, max_rows: int) -> np.ndarray[Any, Any]:
    where = f"tensor {MATRIX_INPUT!r}"
    if not columns.numeric:
        raise BadInput(
            f"this model has string or boolean features: send one tensor per feature "
            f"({columns.listing()}) instead of {where}"
        )
    shape, datatype, data = _parts(tensor, where)
    width = len(columns.names)
    if len(shape) != 2 or shape[1] != width:
        raise BadInput(f"{where} must have shape [n, {width}], got {shape}")
    check_row_count(shape[0], max_rows, where)
    if datatype not in NUMERIC_TYPES:
        raise BadInput(f"{where} must be FP32, FP64 or INT64, got {datatype}")
    flat = _flatten(data, shape, where)
    _check_numbers(flat, datatype, where)
    rows = [flat[i : i + width] for i in range(0, len(flat), width)]
    return matrix_of(rows, columns, where)


def _per_feature(
    tensors: dict[str, dict[str, Any]], columns: Columns, max_rows: int
) -> np.ndarray[Any, Any]:
    unknown = [n for n in tensors if n not in columns.index]
    if unknown:
        raise BadInput(
            f"unknown input tensor(s) {', '.join(map(repr, unknown[:10]))}: send one tensor "
            f"{MATRIX_INPUT!r} of shape [n, {len(columns.names)}] or one per feature "
            f"({columns.listing()})"
        )
    missing = [n for n in columns.names if n not in tensors]
    if missing:
        raise BadInput(f"no tensor for feature(s) {', '.join(map(repr, missing[:10]))}")
    rows = 0
    values: list[list[Any]] = []
    for name, kind in zip(columns.names, columns.kinds, strict=True):
        where = f"tensor {name!r}"
        shape, datatype, data = _parts(tensors[name], where)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise BadInput(f"{where} must have shape [n] or [n, 1], got {shape}")
        if not values:
            rows = shape[0]
            check_row_count(rows, max_rows, where)
        elif shape[0] != rows:
            raise BadInput(f"{where} has {shape[0]} rows; {columns.names[0]!r} has {rows}")
        _check_datatype(kind, datatype, where)
        flat = _flatten(data, shape, where)
        if kind is Kind.NUMBER:
            _check_numbers(flat, datatype, where)
        values.append(flat)
    by_row = [list(row) for row in zip(*values, strict=True)]
    return matrix_of(by_row, columns, "inputs")


def _parts(tensor: dict[str, Any], where: str) -> tuple[list[int], str, Any]:
    unknown = sorted(str(k) for k in tensor if k not in _TENSOR_KEYS)
    if unknown:
        raise BadInput(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}")
    parameters = tensor.get("parameters")
    if isinstance(parameters, dict) and "binary_data_size" in parameters:
        raise BadInput(f"{where} is binary; only JSON tensor data is accepted")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise BadInput(f"{where} needs a `shape`: a list of non-negative integers")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str):
        raise BadInput(f"{where} needs a `datatype` such as FP32, FP64, INT64, BOOL or BYTES")
    if "data" not in tensor:
        raise BadInput(f"{where} has no `data`")
    return shape, datatype, tensor["data"]


def _check_datatype(kind: Kind, datatype: str, where: str) -> None:
    if kind is Kind.NUMBER and datatype not in NUMERIC_TYPES:
        raise BadInput(f"{where} is a numeric feature: send FP32, FP64 or INT64, not {datatype}")
    if kind is Kind.BOOLEAN and datatype != "BOOL":
        raise BadInput(f"{where} is a boolean feature: send BOOL, not {datatype}")
    if kind is Kind.STRING and datatype != "BYTES":
        raise BadInput(f"{where} is a string feature: send BYTES, not {datatype}")


def _flatten(data: Any, shape: Sequence[int], where: str) -> list[Any]:
    """``data`` as a flat row-major list of ``prod(shape)`` values: flat, or nested exactly
    to ``shape``."""
    if not isinstance(data, list):
        raise BadInput(f"{where}: `data` must be a list, got {describe(data)}")
    values: list[Any] = data
    size = math.prod(shape)
    if any(isinstance(v, list) for v in values):
        expected = 1
        for depth, dimension in enumerate(shape[:-1]):
            expected *= dimension
            inner = shape[depth + 1]
            if len(values) != expected or not all(
                isinstance(v, list) and len(v) == inner for v in values
            ):
                raise BadInput(f"{where}: nested `data` does not match shape {list(shape)}")
            values = [v for part in values for v in part]
    if len(values) != size:
        raise BadInput(f"{where} has {len(values)} values; shape {list(shape)} needs {size}")
    return values


def _check_numbers(flat: list[Any], datatype: str, where: str) -> None:
    """Integers for INT tensors; numbers (null as missing) for FP tensors."""
    integers = datatype in INT_TYPES
    for i, value in enumerate(flat):
        value_type = type(value)
        if value_type is int or (not integers and (value_type is float or value is None)):
            continue
        raise BadInput(
            f"{where}: value {i} must be {'an integer' if integers else 'a number'}"
            f", got {describe(value)}"
        )


def encode_v2(
    pred: Prediction, model_name: str, model_version: str, request_id: str | None
) -> dict[str, Any]:
    """The v2 inference response: ``predictions`` (shape ``[n]``; BYTES for string labels,
    BOOL for booleans, INT64 for integers, FP64 otherwise) and, for classifiers with
    probabilities, ``probabilities`` (``[n, n_classes]`` FP64, class labels in the tensor's
    ``parameters.classes``)."""
    outputs = pred.outputs
    n = len(outputs)
    predictions: dict[str, Any] = {
        "name": "predictions",
        "shape": [n],
        "datatype": _datatype(outputs),
        "data": outputs,
    }
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [predictions]
    if pred.probabilities is not None:
        classes = list(pred.probabilities[0]) if pred.probabilities else []
        response["outputs"].append(
            {
                "name": "probabilities",
                "shape": [n, len(classes)],
                "datatype": "FP64",
                "data": [row[c] for row in pred.probabilities for c in classes],
                "parameters": {"classes": classes},
            }
        )
    return response


def _datatype(values: list[Any]) -> str:
    if values and all(type(v) is str for v in values):
        return "BYTES"
    if values and all(type(v) is bool for v in values):
        return "BOOL"
    if values and all(type(v) is int for v in values):
        return "INT64"
    return "FP64"
