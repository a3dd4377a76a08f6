"""Logged models as MLflow's client leaves them in a run's artifacts: a model file and the
``MLmodel`` file that names its flavour, made here without MLflow."""

from __future__ import annotations

import json
import pickle
from functools import cache
from pathlib import Path
from typing import Any

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

IRIS_COLUMNS = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
]
_INPUTS = json.dumps([{"type": "double", "name": c, "required": True} for c in IRIS_COLUMNS])
_OUTPUTS = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}])
_SIGNATURE = f"signature:\n  inputs: '{_INPUTS}'\n  outputs: '{_OUTPUTS}'\n"


@cache
def iris_model() -> LogisticRegression:
    features, labels = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(features, labels)


def skops_bytes() -> bytes:
    import skops.io

    return bytes(skops.io.dumps(iris_model()))


def onnx_bytes() -> bytes:
    from skl2onnx import to_onnx

    model = to_onnx(iris_model(), load_iris(return_X_y=True)[0][:1].astype("float32"))
    return bytes(model.SerializeToString())


def mlmodel(flavour: str, file: str) -> bytes:
    """An MLmodel file as MLflow 3 writes it for ``flavour``: ``skops`` and ``cloudpickle``
    (sklearn), ``onnx``, or ``pyfunc`` (a python_function model with a loader module)."""
    pyfunc = (
        "  python_function:\n"
        "    loader_module: mlflow.sklearn\n"
        f"    model_path: {file}\n"
        "    python_version: 3.11.7\n"
    )
    flavours = {
        "skops": pyfunc + "  sklearn:\n"
        f"    pickled_model: {file}\n    serialization_format: skops\n    sklearn_version: 1.9.1\n",
        "cloudpickle": pyfunc + "  sklearn:\n"
        f"    pickled_model: {file}\n    serialization_format: cloudpickle\n",
        "onnx": "  onnx:\n"
        f"    data: {file}\n    onnx_version: 1.23.2\n    providers: [CPUExecutionProvider]\n",
        "pyfunc": "  python_function:\n"
        "    cloudpickle_version: 3.1.1\n    loader_module: mlflow.pyfunc.model\n"
        f"    python_model: {file}\n",
    }
    return (f"artifact_path: model\nflavors:\n{flavours[flavour]}" + _SIGNATURE).encode()


class WritesMarker:
    """Unpickling this writes a marker file: proof that a pickle ran, which must never be."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "unpickled"))


def marker_pickle(marker: Path) -> bytes:
    return pickle.dumps(WritesMarker(marker), protocol=4)
