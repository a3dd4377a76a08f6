"""The files a trained model leaves among the job's artifacts.

``model.skops`` (always), ``onnx_parity.npy`` (the rows a deferred ONNX export must
reproduce), ``signature.json``, ``environment.json``, ``importances.json`` and, after a search,
``trials.json``. ``model.onnx`` is written by the ``onnx_export`` task, after the job (ADR 0018),
when the pipeline converts and the converted model predicts what the original does.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio

from armillary.contracts.registry import MODEL_FILE_ONNX, MODEL_FILE_SKOPS
from armillary.contracts.training import ESTIMATORS, ONNX_PARITY_FILE, Problem
from armillary.kit.model_files import onnx_session as load_onnx_session

from .estimators import MODEL, PREPROCESS
from .preprocess import output_feature_names

SIGNATURE_FILE = "signature.json"
ENVIRONMENT_FILE = "environment.json"
IMPORTANCES_FILE = "importances.json"
TRIALS_FILE = "trials.json"
HOLDOUT_FILE = "holdout.parquet"

_CORE_PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "skops",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "polars",
)
# How many rows the ONNX export must reproduce before it is kept.
# ONNX computes in float32: a row near a split threshold can land on the other side. The
# export is kept only if it answers like the skops model on every training row (up to this
# many), so that serving from ONNX gives the answers the registered metrics describe.
PARITY_ROWS = 100_000


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def save_skops(model: Any, directory: Path) -> Path:
    path = directory / MODEL_FILE_SKOPS
    sio.dump(model, path)
    return path


def environment(estimator: str) -> dict[str, str]:
    """The Python version and the versions of the packages the model needs to load."""
    packages = list(_CORE_PACKAGES)
    target = ESTIMATORS[estimator].target
    if target.startswith("xgboost:"):
        packages.append("xgboost-cpu" if _installed("xgboost-cpu") else "xgboost")
    elif target.startswith("lightgbm:"):
        packages.append("lightgbm")
    found = {"python": platform.python_version()}
    for name in packages:
        version = _installed(name)
        if version is not None:
            found[name] = version
    return found


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def importances(pipeline: Any, features: Sequence[str]) -> dict[str, Any] | None:
    """The fitted estimator's ``feature_importances_`` (or ``|coef_|``, averaged over classes)
    by the name of the column it saw; None when it has neither."""
    steps = getattr(pipeline, "named_steps", {})
    model = steps.get(MODEL, pipeline)
    values = getattr(model, "feature_importances_", None)
    kind = "feature_importances"
    if values is None and getattr(model, "coef_", None) is not None:
        coef = np.abs(np.asarray(model.coef_, dtype=np.float64))
        values = coef.mean(axis=0) if coef.ndim == 2 else coef
        kind = "abs_coef"
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64).ravel()
    preprocessor = steps.get(PREPROCESS)
    names = output_feature_names(preprocessor, features) if preprocessor is not None else None
    if names is None or len(names) != len(values):
        names = [f"f{i}" for i in range(len(values))]
    ranked = sorted(zip(names, values.tolist(), strict=True), key=lambda p: -abs(p[1]))
    return {"kind": kind, "importances": [{"feature": n, "importance": v} for n, v in ranked]}


def onnx_unsupported(estimator: str, x: np.ndarray[Any, Any]) -> str | None:
    """Why a model of ``estimator`` on features ``x`` cannot be exported, or None."""
    if ESTIMATORS[estimator].extra is not None:
        # Their converters live in onnxmltools, which is not a dependency.
        return f"no ONNX converter installed for {estimator}"
    if x.dtype != np.float64:
        return "no ONNX export for categorical (string) features"
    return None


def save_parity_rows(x: np.ndarray[Any, Any], directory: Path) -> Path:
    """The rows a deferred export must reproduce (at most :data:`PARITY_ROWS`), as ``.npy``:
    read back with ``allow_pickle=False``, so the file can only ever be numbers."""
    path = directory / ONNX_PARITY_FILE
    np.save(path, np.ascontiguousarray(x[:PARITY_ROWS], dtype=np.float64), allow_pickle=False)
    return path


def load_parity_rows(path: Path) -> np.ndarray[Any, Any]:
    rows: np.ndarray[Any, Any] = np.load(path, allow_pickle=False)
    if rows.ndim != 2 or rows.dtype != np.float64:
        raise ValueError("the parity rows are not a float64 matrix")
    return rows


def export_onnx(
    pipeline: Any, x: np.ndarray[Any, Any], problem: Problem, estimator: str, directory: Path
) -> Path | None:
    """``model.onnx`` when the pipeline converts and reproduces the pipeline's predictions on
    the rows of ``x``; otherwise None, with the reason on stderr."""
    path, reason = convert_onnx(pipeline, x, problem, estimator, directory)
    if reason is not None:
        print(f"[onnx] {reason}", file=sys.stderr)
    return path


def convert_onnx(
    pipeline: Any, x: np.ndarray[Any, Any], problem: Problem, estimator: str, directory: Path
) -> tuple[Path | None, str | None]:
    """``(model.onnx, None)`` when the pipeline converts and reproduces the pipeline's
    predictions on the rows of ``x`` (up to :data:`PARITY_ROWS`); ``(None, reason)``
    otherwise."""
    unsupported = onnx_unsupported(estimator, x)
    if unsupported is not None:
        return None, unsupported
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType

        final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
        options = {id(final): {"zipmap": False}}
        converted = to_onnx(
            pipeline,
            initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
            options=options if problem == "classification" else None,
        )
    except Exception as exc:  # any converter failure means: skops only
        return None, f"the converter failed: {type(exc).__name__}: {exc}"[:500]
    path = directory / MODEL_FILE_ONNX
    path.write_bytes(converted.SerializeToString())
    mismatch = _onnx_mismatch(path, pipeline, x[:PARITY_ROWS], problem)
    if mismatch is not None:
        path.unlink()
        return None, mismatch
    return path, None


def _onnx_mismatch(
    path: Path, pipeline: Any, x: np.ndarray[Any, Any], problem: Problem
) -> str | None:
    """None when the export predicts what the pipeline does on ``x``, else why not."""
    try:
        session = load_onnx_session(path)
        got = session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]
    except Exception as exc:
        return f"the ONNX export does not run: {type(exc).__name__}: {exc}"[:500]
    expected = pipeline.predict(x)
    got = np.asarray(got).reshape(expected.shape)
    if problem == "classification":
        differ = int(np.count_nonzero(got.astype(expected.dtype) != expected))
    else:
        scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
        close = np.isclose(got, expected, rtol=1e-3, atol=1e-4 * scale)
        differ = int(np.count_nonzero(~close))
    if differ:
        return (
            f"parity check failed: the ONNX export predicts differently on {differ} of "
            f"{len(x)} training rows"
        )
    return None
