"""A logged model's ``MLmodel`` file: which flavour it is saved in, whether the platform may
register it, and its signature in the registry's terms. Nothing here loads a model: the
decision is made from the YAML alone, which is parsed with ``yaml.safe_load`` (no tags that
build objects).

Safe flavours are ONNX (``onnx``) and skops (``sklearn`` with ``serialization_format:
skops``); the registry checks the file again before it stores it. Every other flavour
(pickle or cloudpickle scikit-learn, ``python_function`` models, PyTorch, ...) needs
unpickling to load, which runs arbitrary code: such a model stays opaque bytes in the run's
artifacts and is refused here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from ..wire_errors import InvalidParameter

MLMODEL_FILE = "MLmodel"
# An MLmodel file is a few kilobytes; anything much larger is not one.
MAX_MLMODEL_BYTES = 1024 * 1024
_FILE_NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,7}$"
)
SAFE_FLAVOURS = (
    "ONNX (mlflow.onnx.log_model) or skops "
    '(mlflow.sklearn.log_model(..., serialization_format="skops"))'
)
# MLflow's column and tensor types, as the prediction service's (Polars) dtypes.
_DTYPES = {
    "double": "Float64",
    "float": "Float32",
    "long": "Int64",
    "integer": "Int32",
    "boolean": "Boolean",
    "string": "String",
    "float64": "Float64",
    "float32": "Float32",
    "int64": "Int64",
    "int32": "Int32",
    "int16": "Int16",
    "int8": "Int8",
    "uint8": "UInt8",
    "bool": "Boolean",
    "str": "String",
    "object": "String",
}
_REGRESSION_DTYPES = frozenset({"Float64", "Float32"})


class UnsafeFlavour(InvalidParameter):
    title = "Model flavour refused"


@dataclass(frozen=True)
class LoggedModel:
    """A logged model the registry may take: its format and file (relative to the model's
    directory), and its signature as the prediction service reads it ({} when it has none)."""

    format: Literal["skops", "onnx"]
    file: str
    signature: dict[str, Any]
    problem: Literal["classification", "regression"] | None


def parse(raw: bytes) -> LoggedModel:
    """The registrable model an MLmodel file describes; :class:`UnsafeFlavour` when it is
    saved only in flavours that load by unpickling, INVALID_PARAMETER_VALUE when it is not an
    MLmodel file."""
    try:
        document = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidParameter("The model's MLmodel file is not valid YAML") from exc
    flavors = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavors, dict) or not flavors:
        raise InvalidParameter("The model's MLmodel file names no flavour")
    chosen = _safe_flavour(flavors)
    if chosen is None:
        names = ", ".join(sorted(str(name) for name in flavors))
        raise UnsafeFlavour(
            f"The model is logged in flavour(s) {names}, which load by unpickling (arbitrary "
            f"code): it is kept as opaque bytes and never loaded, and cannot be registered. "
            f"Log it in a safe flavour: {SAFE_FLAVOURS}"
        )
    fmt, file = chosen
    signature, problem = _signature(document.get("signature"))
    return LoggedModel(fmt, file, signature, problem)


def _safe_flavour(flavors: dict[str, Any]) -> tuple[Literal["skops", "onnx"], str] | None:
    onnx = flavors.get("onnx")
    if isinstance(onnx, dict):
        return "onnx", _file(onnx.get("data"))
    sklearn = flavors.get("sklearn")
    if isinstance(sklearn, dict) and sklearn.get("serialization_format") == "skops":
        return "skops", _file(sklearn.get("pickled_model"))
    return None


def _file(value: Any) -> str:
    if not isinstance(value, str) or not _FILE_NAME.fullmatch(value):
        raise InvalidParameter("The model's MLmodel file names no valid model file")
    return value


def _signature(raw: Any) -> tuple[dict[str, Any], Literal["classification", "regression"] | None]:
    """MLflow's signature (JSON strings of column or tensor specs) as the registry's:
    inputs by name and dtype, the target, and the problem (an integer, boolean or string output
    is a classifier's label, a floating one a regressor's value). {} when the model has
    none or it cannot be expressed (the version is registered, but is served only once it
    has a signature)."""
    if not isinstance(raw, dict):
        return {}, None
    try:
        inputs = json.loads(raw.get("inputs") or "[]")
        outputs = json.loads(raw.get("outputs") or "[]")
    except (TypeError, ValueError):
        return {}, None
    features = _features(inputs)
    target = _features(outputs)
    if not features or not target or len(target) != 1:
        return {}, None
    output = target[0]
    if output["name"].startswith("f") and output["name"][1:].isdigit():
        output = {**output, "name": "prediction"}
    problem: Literal["classification", "regression"] = (
        "regression" if output["dtype"] in _REGRESSION_DTYPES else "classification"
    )
    return {"inputs": features, "target": output, "problem": problem}, problem


def _features(specs: Any) -> list[dict[str, str]]:
    """Columns ``[{name, dtype}]`` of column specs, or of one 1- or 2-D tensor spec (its
    columns named f0, f1, ...); [] when they cannot be expressed."""
    if not isinstance(specs, list) or not specs:
        return []
    if all(isinstance(s, dict) and s.get("type") in _DTYPES for s in specs):
        names = [s.get("name") for s in specs]
        if not all(isinstance(n, str) and n for n in names):
            names = [f"f{i}" for i in range(len(specs))]
        pairs = zip(names, specs, strict=True)
        return [{"name": str(n), "dtype": _DTYPES[s["type"]]} for n, s in pairs]
    if len(specs) == 1 and isinstance(specs[0], dict) and specs[0].get("type") == "tensor":
        spec = specs[0].get("tensor-spec") or {}
        dtype = _DTYPES.get(str(spec.get("dtype")))
        shape = spec.get("shape")
        if dtype is None or not isinstance(shape, list) or not 1 <= len(shape) <= 2:
            return []
        width = 1 if len(shape) == 1 else shape[1]
        if not isinstance(width, int) or not 1 <= width <= 10_000:
            return []
        return [{"name": f"f{i}", "dtype": dtype} for i in range(width)]
    return []
