"""Loading models (ONNX, skops through the allow-list) and what their predictions look like."""

from __future__ import annotations

import json
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer
from tests.unit.serving.runtime.conftest import IRIS_FEATURES, Trained, export_onnx

from armillary.serving.runtime import (
    BadInput,
    ModelLoadError,
    OnnxModel,
    Prediction,
    SkopsModel,
    load_model,
)
from armillary.serving.runtime.model import onnx_session


def _load(trained: Trained, fmt: str) -> Any:
    path = trained.onnx if fmt == "onnx" else trained.skops
    assert path is not None
    return load_model("version-1", path, fmt, trained.signature)


# ONNX Runtime computes in float32: a tree's split can fall the other way for a row whose
# scaled value sits on a threshold, so a few rows of an ONNX forest may differ by one tree.
ONNX_TREE_ROWS_OFF = 0.1


def _rows_off(pred: Prediction, expected: np.ndarray[Any, Any], classes: Any) -> float:
    """The share of rows whose probabilities differ from ``expected``; checks the keys and
    that every row sums to 1."""
    assert pred.probabilities is not None
    keys = [str(c) for c in classes]
    off = 0
    for row, want in zip(pred.probabilities, expected, strict=True):
        assert list(row) == keys
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-5)
        off += not np.allclose([row[k] for k in keys], want, atol=1e-4)
    return off / len(expected)


@pytest.mark.parametrize("fmt", ["onnx", "skops"])
@pytest.mark.parametrize("name", ["iris_lr", "iris_rf"])
def test_classifier_predictions_match_scikit_learn(
    name: str, fmt: str, request: pytest.FixtureRequest
) -> None:
    trained: Trained = request.getfixturevalue(name)
    model = _load(trained, fmt)
    assert model.format == fmt
    assert model.key == "version-1"
    pred = model.predict(trained.x)
    expected = trained.pipeline.predict(trained.x)
    assert pred.outputs == expected.tolist()
    # Plain Python values, of the signature's class type: JSON carries them as they are.
    assert {type(v) for v in pred.outputs} == {type(trained.signature["classes"][0])}
    json.dumps({"outputs": pred.outputs, "probabilities": pred.probabilities})
    proba = trained.pipeline.predict_proba(trained.x)
    allowed = ONNX_TREE_ROWS_OFF if (fmt, name) == ("onnx", "iris_rf") else 0.0
    assert _rows_off(pred, proba, trained.pipeline.classes_) <= allowed


@pytest.mark.parametrize("fmt", ["onnx", "skops"])
def test_regressor_predictions_match_scikit_learn(fmt: str, diabetes_rf: Trained) -> None:
    pred = _load(diabetes_rf, fmt).predict(diabetes_rf.x)
    assert pred.probabilities is None
    assert all(type(v) is float for v in pred.outputs)
    expected = diabetes_rf.pipeline.predict(diabetes_rf.x)
    close = np.isclose(pred.outputs, expected, rtol=1e-3)
    assert close.mean() >= (1 - ONNX_TREE_ROWS_OFF if fmt == "onnx" else 1.0)


def test_single_rows_answer_like_the_whole_batch(iris_lr: Trained) -> None:
    model = _load(iris_lr, "onnx")
    whole = model.predict(iris_lr.x)
    for i in (0, 60, 149):
        one = model.predict(iris_lr.x[i : i + 1])
        assert one.outputs == whole.outputs[i : i + 1]
        assert whole.probabilities is not None
        assert one.probabilities is not None
        assert list(one.probabilities[0]) == list(whole.probabilities[i])
        assert list(one.probabilities[0].values()) == pytest.approx(
            list(whole.probabilities[i].values()), rel=1e-5, abs=1e-7
        )


def test_zipmap_probabilities_are_read_like_the_tensor_form(
    iris_lr: Trained, tmp_path: Path
) -> None:
    zipped = export_onnx(iris_lr.pipeline, 4, True, tmp_path / "zipmap.onnx", zipmap=True)
    tensor_pred = _load(iris_lr, "onnx").predict(iris_lr.x)
    zip_pred = load_model("k", zipped, "onnx", iris_lr.signature).predict(iris_lr.x)
    assert zip_pred.outputs == tensor_pred.outputs
    assert zip_pred.probabilities is not None
    assert tensor_pred.probabilities is not None
    for a, b in zip(zip_pred.probabilities, tensor_pred.probabilities, strict=True):
        assert list(a) == list(b)
        assert list(a.values()) == pytest.approx(list(b.values()))


@pytest.mark.parametrize("fmt", ["onnx", "skops"])
def test_decision_scores_are_not_reported_as_probabilities(fmt: str, iris_ridge: Trained) -> None:
    pred = _load(iris_ridge, fmt).predict(iris_ridge.x)
    assert pred.probabilities is None
    assert pred.outputs == iris_ridge.pipeline.predict(iris_ridge.x).tolist()


def test_string_and_boolean_features_are_served_from_skops(mixed: Trained) -> None:
    model = _load(mixed, "skops")
    assert isinstance(model, SkopsModel)
    rows = np.array([[1.5, "red", True], [float("nan"), None, None]], dtype=object)
    pred = model.predict(rows)
    assert pred.outputs == mixed.pipeline.predict(rows).tolist()
    assert _rows_off(pred, mixed.pipeline.predict_proba(rows), ["bad", "good"]) == 0


def test_predict_is_thread_safe(iris_rf: Trained) -> None:
    model = _load(iris_rf, "onnx")
    expected = model.predict(iris_rf.x).outputs

    def one(i: int) -> Any:
        return model.predict(iris_rf.x[i : i + 1]).outputs[0]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(150)))
    assert got == expected


def test_onnx_sessions_use_one_thread_and_sequential_execution(iris_lr: Trained) -> None:
    assert iris_lr.onnx is not None
    options = onnx_session(iris_lr.onnx).get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert str(options.execution_mode).endswith("ORT_SEQUENTIAL")
    assert isinstance(_load(iris_lr, "onnx"), OnnxModel)


class Tripwire:
    """Records whether anything ever built one (a load must not run file contents)."""

    built = False

    def __init__(self) -> None:
        Tripwire.built = True

    def __setstate__(self, state: Any) -> None:
        Tripwire.built = True

    def __reduce__(self) -> Any:
        return (Tripwire, ())


def test_a_pickle_is_refused_and_never_unpickled(tmp_path: Path, iris_lr: Trained) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps(Tripwire()))
    Tripwire.built = False
    with pytest.raises(ModelLoadError, match="not a skops archive"):
        load_model("k", path, "skops", iris_lr.signature)
    assert not Tripwire.built


def test_a_skops_file_naming_other_types_is_refused(tmp_path: Path, iris_lr: Trained) -> None:
    path = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(func=np.log1p, kw_args={"x": Tripwire()}), path)
    Tripwire.built = False
    with pytest.raises(ModelLoadError, match="not trusted") as refused:
        load_model("k", path, "skops", iris_lr.signature)
    assert "Tripwire" in str(refused.value)
    assert str(tmp_path) not in str(refused.value)
    assert not Tripwire.built


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        (b"not a model", "onnx", "ONNX model cannot be loaded"),
        (b"not a model", "skops", "not a skops archive"),
        (b"", "pickle", "unknown model format"),
    ],
)
def test_unusable_files_are_refused(
    content: bytes, fmt: str, message: str, tmp_path: Path, iris_lr: Trained
) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as refused:
        load_model("k", path, fmt, iris_lr.signature)
    assert str(tmp_path) not in str(refused.value)


def test_a_model_that_does_not_fit_its_signature_is_refused(iris_lr: Trained) -> None:
    assert iris_lr.onnx is not None
    wider = {
        **iris_lr.signature,
        "inputs": [*iris_lr.signature["inputs"], {"name": "x", "dtype": "Float64"}],
    }
    with pytest.raises(ModelLoadError, match=r"not \[n, 5\]"):
        load_model("k", iris_lr.onnx, "onnx", wider)
    with pytest.raises(ModelLoadError, match="signature is not valid"):
        load_model("k", iris_lr.onnx, "onnx", {"inputs": IRIS_FEATURES})


def test_errors_render_as_problem_statuses() -> None:
    assert BadInput("x").status == 422
    assert BadInput("instances[0] has no column 'a'").detail == "instances[0] has no column 'a'"
    assert ModelLoadError("x").status == 503
