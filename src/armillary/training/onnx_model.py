"""An ONNX Runtime session with the ``predict`` / ``predict_proba`` face metrics expect."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort


class OnnxModel:
    """Runs a converted scikit-learn model: output 0 is the prediction, output 1 (for
    classifiers) the class probabilities in ``classes`` order."""

    def __init__(self, session: ort.InferenceSession, classes: Any | None = None) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._has_proba = len(session.get_outputs()) > 1
        if classes is not None:
            self.classes_ = np.asarray(classes)

    def _run(self, x: np.ndarray[Any, Any]) -> list[Any]:
        if x.dtype == object:
            raise ValueError("the ONNX model takes numeric features only")
        return list(self._session.run(None, {self._input: x.astype(np.float32)}))

    def predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(self._run(x)[0]).ravel()

    def __getattr__(self, name: str) -> Any:
        # predict_proba exists only when the session has a probabilities output.
        if name == "predict_proba" and self.__dict__.get("_has_proba"):
            return lambda x: np.asarray(self._run(x)[1], dtype=np.float64)
        raise AttributeError(name)
