"""The ``onnx_export`` task: a registered version's ``model.skops`` converted to ONNX and kept
only if it predicts what the skops model does on the training rows (ADR 0018).

It runs in the sandbox like any task, as the first task of the export job the platform starts
after the training job, so the training job never waits for it. An export that cannot be made
is not a task failure: the outputs say why, and the version keeps serving from skops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from armillary.contracts.registry import MODEL_FILE_ONNX, MODEL_FILE_SKOPS
from armillary.contracts.tasks import TaskContext
from armillary.contracts.training import ESTIMATORS, OnnxExportOutputs, OnnxExportParams
from armillary.kit.model_files import load_skops

from . import artifacts as files
from . import story
from .task_io import task_api, workdir


def run_onnx_export(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """The ``onnx_export`` task: see the module docstring."""
    spec = OnnxExportParams.model_validate(params)
    log = story.task_log("onnx_export", context)
    out = Path(context.artifacts_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = workdir(context, "onnx_export")
    with task_api(context) as api, log.stage("read"):
        record = api.get_model_version(spec.model, spec.version)
        skops = api.fetch_model_artifact(
            spec.model, spec.version, MODEL_FILE_SKOPS, work / MODEL_FILE_SKOPS
        )
        parity = api.fetch_table(spec.parity.model_dump(), work / spec.parity.name)
    estimator = str(record.get("estimator") or "")
    problem = record.get("problem")
    log(f"model: {spec.model} version {spec.version} ({estimator or 'estimator unknown'})")
    if estimator not in ESTIMATORS or problem not in ("classification", "regression"):
        return _outputs(None, 0, "the version does not say which estimator or problem it is")
    rows = files.load_parity_rows(parity)
    model = load_skops(skops)
    with log.stage("onnx"):
        path, reason = files.convert_onnx(model, rows, problem, estimator, out)
    checked = min(len(rows), files.PARITY_ROWS)
    if reason is not None:
        log(f"onnx: {reason}")
    story.onnx(log, path is not None, checked)
    ref = {"job_id": context.job_id, "task": context.task, "name": MODEL_FILE_ONNX}
    return _outputs(ref if path is not None else None, checked, reason)


def _outputs(onnx: dict[str, str] | None, rows: int, reason: str | None) -> dict[str, Any]:
    return OnnxExportOutputs.model_validate(
        {"onnx": onnx, "reason": reason, "parity_rows": rows}
    ).model_dump(mode="json")
