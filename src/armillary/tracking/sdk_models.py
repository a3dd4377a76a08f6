"""Logged models for the tracking SDK: an MLflow-style model folder (an ``MLmodel`` file naming
the flavour, and the model file) that the tracking service's registration accepts.

Only the safe formats are written: ONNX (an ``onnx.ModelProto`` or its bytes) and a
scikit-learn estimator saved with skops. Anything else would load by unpickling, which runs
arbitrary code, so it is refused here, before anything is sent. Imports numpy, onnx and skops
only when a model of theirs is logged.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MLMODEL_FILE = "MLmodel"
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
SAFE_FORMATS = "ONNX (an onnx.ModelProto or its bytes) or skops (a scikit-learn estimator)"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# MLflow's column types: what the tracking service maps onto the prediction service's.
COLUMN_TYPES = frozenset({"double", "float", "long", "integer", "boolean", "string"})
_NUMPY_TYPES = {
    "f8": "double",
    "f4": "float",
    "i8": "long",
    "i4": "integer",
    "i2": "integer",
    "i1": "integer",
    "u1": "integer",
    "b1": "boolean",
}


class UnsafeModel(TypeError):
    """A model in a format that loads by unpickling: never logged by the SDK."""


@dataclass(frozen=True)
class SavedModel:
    format: str  # "onnx" | "skops"
    file: str
    content: bytes
    flavour: dict[str, Any]


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            "A model's name is one artifact directory: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def save(model: Any) -> SavedModel:
    """The model's file in a safe format; :class:`UnsafeModel` for anything else."""
    if isinstance(model, bytes | bytearray | memoryview):
        return _onnx(bytes(model))
    if type(model).__name__ == "ModelProto" and hasattr(model, "SerializeToString"):
        return _onnx(model.SerializeToString())
    if _is_sklearn_estimator(model):
        import sklearn
        import skops.io

        flavour = {
            "pickled_model": SKOPS_FILE,
            "serialization_format": "skops",
            "sklearn_version": sklearn.__version__,
            "code": None,
        }
        return SavedModel("skops", SKOPS_FILE, skops.io.dumps(model), flavour)
    raise UnsafeModel(
        f"log_model takes {SAFE_FORMATS}; a {type(model).__name__} would be saved by pickling, "
        "which runs arbitrary code when loaded, so it is not logged. Export it to ONNX, or log "
        "a scikit-learn estimator (saved with skops)"
    )


def _onnx(content: bytes) -> SavedModel:
    if not content:
        raise ValueError("The ONNX model is empty")
    return SavedModel("onnx", ONNX_FILE, content, {"data": ONNX_FILE, "providers": []})


def _is_sklearn_estimator(model: Any) -> bool:
    base = sys.modules.get("sklearn.base")
    if base is None:
        return False
    return isinstance(model, base.BaseEstimator)


def mlmodel(saved: SavedModel, run_id: str, name: str, signature: Mapping[str, Any] | None) -> str:
    """The ``MLmodel`` file MLflow writes for the flavour (YAML; JSON is YAML too)."""
    flavour = "onnx" if saved.format == "onnx" else "sklearn"
    document: dict[str, Any] = {
        "artifact_path": name,
        "flavors": {flavour: saved.flavour},
        "run_id": run_id,
        "utc_time_created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    if signature is not None:
        document["signature"] = mlflow_signature(signature)
    return json.dumps(document, indent=2) + "\n"


def mlflow_signature(signature: Mapping[str, Any]) -> dict[str, str]:
    """MLflow's signature from ``{"inputs": {column: type}, "output": type}`` (types among
    :data:`COLUMN_TYPES`), or from MLflow's own ``{"inputs": [...], "outputs": [...]}``."""
    inputs = signature.get("inputs")
    if isinstance(inputs, Mapping):
        specs = [{"type": _column_type(t), "name": str(n)} for n, t in inputs.items()]
    elif isinstance(inputs, list) and all(isinstance(s, Mapping) for s in inputs):
        specs = [dict(s) for s in inputs]
    else:
        raise ValueError("signature: 'inputs' maps each column to its type")
    if "output" in signature:
        outputs = [{"type": _column_type(signature["output"])}]
    elif isinstance(signature.get("outputs"), list):
        outputs = [dict(s) for s in signature["outputs"]]
    else:
        raise ValueError("signature: 'output' is the prediction's type")
    if not specs:
        raise ValueError("signature: the model takes at least one input column")
    return {"inputs": json.dumps(specs), "outputs": json.dumps(outputs)}


def _column_type(value: Any) -> str:
    name = str(value)
    if name not in COLUMN_TYPES:
        raise ValueError(f"signature: type {name!r} is not one of {sorted(COLUMN_TYPES)}")
    return name


def infer_signature(inputs: Any, output: Any) -> dict[str, Any]:
    """A signature from example data: a pandas or polars frame (its columns and types) or a
    2-D numpy array (columns ``f0``, ``f1``, ...), and the model's predictions."""
    return {"inputs": _columns(inputs), "output": _type_of(output)}


def _columns(frame: Any) -> dict[str, str]:
    columns = getattr(frame, "columns", None)
    if columns is not None:
        return {str(c): _type_of(frame[c]) for c in columns}
    import numpy as np

    array = np.asarray(frame)
    if array.ndim != 2:
        raise ValueError("infer_signature: inputs are a frame or a 2-D array")
    kind = _numpy_type(array.dtype)
    return {f"f{i}": kind for i in range(array.shape[1])}


def _type_of(values: Any) -> str:
    import numpy as np

    to_numpy = getattr(values, "to_numpy", None)
    array = to_numpy() if callable(to_numpy) else np.asarray(values)
    return _numpy_type(array.dtype)


def _numpy_type(dtype: Any) -> str:
    if dtype.kind in "OUS":
        return "string"
    return _NUMPY_TYPES.get(f"{dtype.kind}{dtype.itemsize}", "double")


def write(directory: Path, saved: SavedModel, document: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / saved.file).write_bytes(saved.content)
    (directory / MLMODEL_FILE).write_text(document, encoding="utf-8")
