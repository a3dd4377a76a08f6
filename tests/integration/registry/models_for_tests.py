"""Real model files (and hostile ones) for the registry tests, built once per session."""

from __future__ import annotations

import functools
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnx
import skops.io
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


@functools.cache
def _fitted() -> Pipeline:
    rng = np.random.default_rng(0)
    features = rng.random((40, 3)).astype(np.float32)
    target = (features[:, 0] > 0.5).astype(int)
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(
        features, target
    )


@functools.cache
def skops_bytes() -> bytes:
    return bytes(skops.io.dumps(_fitted()))


@functools.cache
def onnx_bytes() -> bytes:
    model = to_onnx(_fitted(), np.zeros((1, 3), dtype=np.float32), target_opset=17)
    return bytes(model.SerializeToString())


def skops_referencing(function: object) -> bytes:
    """A genuine skops file whose schema names ``function`` (e.g. ``eval``, ``os.system``)."""
    return bytes(skops.io.dumps({"model": _fitted(), "hook": function}))


def onnx_with_custom_domain() -> bytes:
    node = helper.make_node("Evil", ["x"], ["y"], domain="com.example.evil")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example.evil", 1)],
    )
    return bytes(model.SerializeToString())


class WritesMarker:
    """Unpickling this writes ``path``: proof that a file was (never) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (self.path, "unpickled!"))


def marker_pickle(path: Path) -> bytes:
    return pickle.dumps(WritesMarker(path))


def zip_of_pickle(path: Path) -> bytes:
    """What ``torch.save`` and friends write: a zip holding a pickle."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", marker_pickle(path))
    return buffer.getvalue()


SIGNATURE = {
    "inputs": [{"name": f"f{i}", "dtype": "Float32"} for i in range(3)],
    "target": {"name": "label", "dtype": "Int64"},
    "problem": "classification",
    "classes": [0, 1],
}
ENVIRONMENT = {"scikit-learn": "1.9.1", "skops": "0.16.0"}


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


def check_onnx_loads(data: bytes) -> None:
    onnx.checker.check_model(onnx.load_from_string(data))
