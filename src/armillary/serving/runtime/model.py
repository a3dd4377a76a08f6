"""Loaded models: an ONNX Runtime session (the fast path) or a skops-loaded pipeline.

Both answer :meth:`LoadedModel.predict` with plain Python values, so that the caller can put
them in JSON: labels as the signature's class values, probabilities keyed by ``str(label)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import ValidationError

from armillary.contracts.training import Signature
from armillary.kit import model_files
from armillary.kit.lazy_import import lazy

from .errors import ModelLoadError

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

if TYPE_CHECKING:  # onnxruntime is imported by kit.model_files when a model loads
    import onnxruntime as ort

Format = Literal["onnx", "skops"]
# A classifier's second ONNX output is called "probabilities" even when it holds decision
# scores (RidgeClassifier, SVC without probability=True): probes tell them apart at load.
_PROBE_ROWS = 8
_PROBABILITY_TOLERANCE = 1e-3
# ONNX input type -> numpy dtype name (a name: numpy loads on first use, see kit.lazy_import).
_ONNX_INPUT_TYPES: dict[str, str] = {"tensor(float)": "float32", "tensor(double)": "float64"}


@dataclass(frozen=True)
class Prediction:
    """Per row: the predicted label (classification) or value (regression), and for
    classifiers that estimate them, the class probabilities ``{str(label): p}``."""

    outputs: list[Any]
    probabilities: list[dict[str, float]] | None


class LoadedModel(Protocol):
    """A model ready to answer; ``predict`` takes rows in signature input order and is
    thread-safe."""

    key: str  # the model version's id
    signature: Signature
    format: Format

    def predict(self, rows: np.ndarray[Any, Any]) -> Prediction: ...


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class _Labels:
    """Maps a model's raw labels to the signature's class values and their string keys."""

    def __init__(self, classes: Sequence[Any]) -> None:
        self.classes = [_plain(c) for c in classes]
        self.keys = [str(c) for c in self.classes]
        # 1 == 1.0 == True in a dict: an int64 label from ONNX finds the float class 1.0.
        self._lookup = {c: c for c in self.classes}

    def outputs(self, labels: np.ndarray[Any, Any]) -> list[Any]:
        lookup = self._lookup
        return [lookup.get(v, v) for v in labels.ravel().tolist()]

    def rows(self, proba: np.ndarray[Any, Any]) -> list[dict[str, float]]:
        keys = self.keys
        return [dict(zip(keys, row, strict=True)) for row in proba.astype(np.float64).tolist()]

    def from_maps(self, maps: Sequence[dict[Any, float]]) -> list[dict[str, float]]:
        keys = self.keys
        lookup = self._lookup
        rows = []
        for row in maps:
            by_key = {str(lookup.get(_plain(k), _plain(k))): float(p) for k, p in row.items()}
            rows.append({k: by_key.get(k, 0.0) for k in keys})
        return rows


def _is_distribution(proba: np.ndarray[Any, Any]) -> bool:
    values = np.asarray(proba, dtype=np.float64)
    return bool(
        values.ndim == 2
        and np.isfinite(values).all()
        and (values >= -_PROBABILITY_TOLERANCE).all()
        and (values <= 1 + _PROBABILITY_TOLERANCE).all()
        and np.allclose(values.sum(axis=1), 1.0, atol=_PROBABILITY_TOLERANCE)
    )


class OnnxModel:
    """A converted scikit-learn model: output 0 is the label or value, output 1 (classifiers)
    the class probabilities, as a ``[n, classes]`` tensor or (ZipMap) a list of maps."""

    format: Format = "onnx"

    def __init__(self, key: str, session: ort.InferenceSession, signature: Signature) -> None:
        self.key = key
        self.signature = signature
        self._session = session
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError("the ONNX model must take exactly one input tensor")
        width = len(signature.inputs)
        declared = inputs[0].shape
        if len(declared) != 2 or (isinstance(declared[1], int) and declared[1] != width):
            raise ModelLoadError(f"the ONNX model's input is not [n, {width}] as signed")
        dtype = _ONNX_INPUT_TYPES.get(inputs[0].type)
        if dtype is None:
            raise ModelLoadError(f"the ONNX model takes {inputs[0].type}, not float input")
        self._input: str = inputs[0].name
        self._dtype = np.dtype(dtype)
        outputs = session.get_outputs()
        self._classifier = signature.problem == "classification"
        self._labels = _Labels(signature.classes or [])
        self._outputs = [o.name for o in outputs[: 2 if self._classifier else 1]]
        results = self._probe()
        self._has_proba = len(results) > 1 and self._are_probabilities(results[1])
        if not self._has_proba:
            self._outputs = self._outputs[:1]

    def _probe(self) -> list[Any]:
        """The outputs for a few made-up rows: the model must run on its signed input (this
        also warms the session up before the first request)."""
        width = len(self.signature.inputs)
        rows = np.random.default_rng(0).normal(size=(_PROBE_ROWS, width)).astype(self._dtype)
        rows[0] = 0
        try:
            return list(self._session.run(self._outputs, {self._input: rows}))
        except Exception as exc:  # a model that cannot run on its own input shape
            raise ModelLoadError("the ONNX model does not run on its signed input") from exc

    def _are_probabilities(self, raw: Any) -> bool:
        keys = self._labels.keys
        if not keys:
            return False
        if isinstance(raw, list):
            raw = np.asarray([[r[k] for k in keys] for r in self._labels.from_maps(raw)])
        return _is_distribution(raw) and raw.shape[1] == len(keys)

    def predict(self, rows: np.ndarray[Any, Any]) -> Prediction:
        feed = rows if rows.dtype == self._dtype else rows.astype(self._dtype)
        results = self._session.run(self._outputs, {self._input: feed})
        if not self._classifier:
            values = np.asarray(results[0], dtype=np.float64).ravel().tolist()
            return Prediction(values, None)
        outputs = self._labels.outputs(np.asarray(results[0]))
        if not self._has_proba:
            return Prediction(outputs, None)
        proba = results[1]
        if isinstance(proba, list):
            return Prediction(outputs, self._labels.from_maps(proba))
        return Prediction(outputs, self._labels.rows(proba))


class SkopsModel:
    """A fitted scikit-learn pipeline (or XGBoost/LightGBM estimator) loaded from skops."""

    format: Format = "skops"

    def __init__(self, key: str, estimator: Any, signature: Signature) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise ModelLoadError("the skops file holds no model with a predict method")
        self.key = key
        self.signature = signature
        self._estimator = estimator
        self._classifier = signature.problem == "classification"
        classes = getattr(estimator, "classes_", None) if self._classifier else None
        if self._classifier and classes is None:
            classes = signature.classes or []
        self._labels = _Labels(list(classes) if classes is not None else [])
        # hasattr is False where scikit-learn hides predict_proba (SVC, hinge-loss SGD).
        self._has_proba = self._classifier and hasattr(estimator, "predict_proba")

    def predict(self, rows: np.ndarray[Any, Any]) -> Prediction:
        predicted = np.asarray(self._estimator.predict(rows))
        if not self._classifier:
            return Prediction(predicted.astype(np.float64).ravel().tolist(), None)
        outputs = self._labels.outputs(predicted)
        if not self._has_proba:
            return Prediction(outputs, None)
        return Prediction(outputs, self._labels.rows(self._estimator.predict_proba(rows)))


def onnx_session(path: Path) -> ort.InferenceSession:
    """A CPU session tuned for many small concurrent calls: one thread per call (requests
    and micro-batches bring the parallelism), sequential execution, full graph optimisation."""
    try:
        return model_files.onnx_session(path, threads=1)
    except model_files.ModelFileRefused as exc:
        raise ModelLoadError("the ONNX model cannot be loaded") from exc


def _skops(path: Path) -> Any:
    try:
        return model_files.load_skops(path)
    except model_files.ModelFileRefused as exc:
        raise ModelLoadError(f"the skops model cannot be loaded: {exc.detail}") from exc


def load_model(key: str, path: Path, format: str, signature: dict[str, Any]) -> LoadedModel:
    """The model in ``path`` (``format`` ``onnx`` or ``skops``) checked against
    ``signature``; :class:`ModelLoadError` when it cannot be served. Blocking: call it in a
    worker thread."""
    try:
        signed = Signature.model_validate(signature)
    except ValidationError as exc:
        raise ModelLoadError("the model version's signature is not valid") from exc
    if format == "onnx":
        return OnnxModel(key, onnx_session(path), signed)
    if format == "skops":
        return SkopsModel(key, _skops(path), signed)
    raise ModelLoadError(f"unknown model format {format!r}; expected onnx or skops")
