"""The ``train`` task type: fit, validate, search, and store the model's artifacts.

Locally: a preprocessing + estimator pipeline, validated on a hold-out split (the final model
is the one fitted on the training split) or by k-fold cross-validation (fold means and
standard deviations; the final model is refitted on every row). ``backend: sagemaker`` splits
here, trains remotely on the training split, and scores the returned model here.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.model_selection import train_test_split

from armillary.contracts.data_tasks import DatasetRef, TableRef
from armillary.contracts.registry import MODEL_FILE_ONNX, MODEL_FILE_SKOPS
from armillary.contracts.tasks import TaskContext
from armillary.contracts.training import (
    ONNX_PARITY_FILE,
    ModelArtifacts,
    OnnxState,
    TrainOutputs,
    TrainParams,
    Trial,
)
from armillary.kit.drift import build_reference
from armillary.kit.model_files import load_skops
from armillary.kit.model_files import onnx_session as load_onnx_session
from armillary.sdk.task_api import TaskApiError
from armillary.sdk.task_log import TaskLog, pairs

from . import artifacts as files
from . import story, tracked
from .estimators import build_pipeline, check_labels
from .metrics import score, summarise
from .onnx_model import OnnxModel
from .progress import Progress
from .search import cross_validate, run_search, splitter
from .tabular import Tabular, TrainingError, prepare, signature
from .task_io import fetch_input_table, task_api, workdir


@dataclass
class Fitted:
    model: Any
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    metrics_std: dict[str, float] = field(default_factory=dict)
    trials: list[Trial] = field(default_factory=list)
    holdout: bool = False
    format: str = "skops"
    training_job: str | None = None
    onnx: OnnxState | None = None


def run_train(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """The ``train`` task: see the module docstring."""
    spec = TrainParams.model_validate(params)
    log = story.task_log("train", context)
    out = Path(context.artifacts_dir)
    out.mkdir(parents=True, exist_ok=True)
    with task_api(context) as api:
        progress = Progress(api)
        work = workdir(context, "train")
        with log.stage("read"):
            path, digest = fetch_input_table(api, inputs, spec.input, work / "input.parquet")
            frame = pl.read_parquet(path)
            data = prepare(frame, spec)
            check_labels(spec.estimator, data.y)
        story.data(log, spec, data, frame.height, digest)
        if spec.backend == "sagemaker":
            fitted = _train_sagemaker(spec, data, context, work, progress, log)
        else:
            fitted = _train_local(spec, data, out, progress, log)
        with log.stage("tracking"):
            tracked.record(api, spec, fitted, context.task, log)
    with log.stage("artifacts"):
        outputs = _outputs(spec, data, fitted, inputs, context, digest)
    story.artifacts(log, out)
    return outputs


def holdout_split(data: Tabular, spec: TrainParams) -> tuple[np.ndarray[Any, Any], ...]:
    """Indices of the training and hold-out rows (stratified by class when asked)."""
    v = spec.validation
    stratify = data.y if spec.problem == "classification" and v.stratify else None
    try:
        train, test = train_test_split(
            np.arange(len(data.y)), test_size=v.test_size, random_state=v.seed, stratify=stratify
        )
    except ValueError as exc:
        raise TrainingError(f"cannot split off the hold-out rows: {exc}") from None
    return train, test


def _factory(spec: TrainParams, data: Tabular) -> Any:
    def make(extra: Mapping[str, Any] | None = None) -> Any:
        return build_pipeline(
            spec.estimator,
            {**spec.hyperparameters, **(extra or {})},
            n_features=data.x.shape[1],
            categorical=data.categorical,
            preprocessing=spec.preprocessing,
            seed=spec.validation.seed,
        )

    return make


def _fit(model: Any, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], name: str) -> Any:
    try:
        return model.fit(x, y)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"fitting {name} failed: {exc}") from None


def _train_local(
    spec: TrainParams, data: Tabular, out: Path, progress: Progress, log: TaskLog
) -> Fitted:
    make = _factory(spec, data)
    v = spec.validation
    problem = spec.problem
    holdout = v.method == "holdout"
    train, test = holdout_split(data, spec) if holdout else (np.arange(len(data.y)), None)
    story.split(log, spec, len(data.y), None if test is None else len(test))
    hyper: dict[str, Any] = dict(spec.hyperparameters)
    trials: list[Trial] = []
    if spec.search is not None:
        with log.stage("search"):
            best, trials = run_search(
                make,
                data.x[train],
                data.y[train],
                problem,
                spec.search,
                stratify=v.stratify,
                seed=v.seed,
                progress=progress,
                log=log,
            )
        hyper.update(best)
    std: dict[str, float] = {}
    if test is None:

        def fold_done(number: int, total: int, metrics: dict[str, float]) -> None:
            progress(stage="cross_validation", current=number, total=total, metrics=metrics)
            log(f"fold {number}/{total}: {pairs(metrics)}")

        cv = splitter(problem, v.folds, stratify=v.stratify, seed=v.seed)
        with log.stage("cross_validation"):
            try:
                folds = cross_validate(lambda: make(hyper), data.x, data.y, problem, cv, fold_done)
            except (ValueError, TypeError) as exc:
                raise TrainingError(f"cross-validating {spec.estimator} failed: {exc}") from None
        metrics, std = summarise(folds)
    progress(stage="fit", current=0, total=1, message=f"fitting {spec.estimator}")
    log(f"fit: {spec.estimator} ({story.hyperparameters(hyper)}) on {len(train)} rows")
    with log.stage("fit"):
        model = _fit(make(hyper), data.x[train], data.y[train], spec.estimator)
    if test is not None:
        with log.stage("score"):
            metrics = score(model, data.x[test], data.y[test], problem)
        data.rows[test].write_parquet(out / files.HOLDOUT_FILE)
        log(f"metrics on the {len(test)} hold-out rows: {pairs(metrics)}")
    else:
        log(f"metrics, mean ± std over {v.folds} folds: {story.metrics_with_spread(metrics, std)}")
    progress(stage="fit", current=1, total=1, metrics=metrics)
    files.save_skops(model, out)
    onnx = _defer_onnx(log, data.x, spec, out)
    return Fitted(model, metrics, hyper, std, trials, holdout=test is not None, onnx=onnx)


def _defer_onnx(
    log: TaskLog, x: np.ndarray[Any, Any], spec: TrainParams, out: Path
) -> OnnxState | None:
    """The export and its parity check run after the job (ADR 0018): here only the cheap
    checks, and the rows the export must reproduce."""
    if not spec.onnx:
        log("onnx: not requested")
        return None
    reason = files.onnx_unsupported(spec.estimator, x)
    if reason is not None:
        story.onnx_unsupported(log, reason)
        return OnnxState(status="failed", reason=reason)
    files.save_parity_rows(x, out)
    story.onnx_deferred(log, min(len(x), files.PARITY_ROWS))
    return OnnxState(status="pending")


def _train_sagemaker(
    spec: TrainParams,
    data: Tabular,
    context: TaskContext,
    work: Path,
    progress: Progress,
    log: TaskLog,
) -> Fitted:
    if spec.validation.method != "holdout":
        raise TrainingError("the sagemaker backend validates on a hold-out split: use holdout")
    train, test = holdout_split(data, spec)
    story.split(log, spec, len(data.y), len(test))
    train_path = work / "train.parquet"
    data.rows[train].write_parquet(train_path)
    out = Path(context.artifacts_dir)
    data.rows[test].write_parquet(out / files.HOLDOUT_FILE)
    # The worker runs the SageMaker job: it holds the AWS credentials, the sandbox does not.
    received = work / "sagemaker-model"
    with log.stage("sagemaker"), task_api(context) as api:
        try:
            result = api.worker_call("sagemaker_train", train_path, received)
        except TaskApiError as exc:
            raise TrainingError(exc.detail or str(exc)) from None
    job_name, fmt = str(result.get("job_name", "")), str(result.get("format", ""))
    log(f"sagemaker: training job {job_name} returned a {fmt} model")
    model: Any
    onnx: OnnxState | None = None
    if fmt == "onnx":
        classes = np.unique(data.y[train]) if spec.problem == "classification" else None
        model = OnnxModel(load_onnx_session(received), classes)
        shutil.copyfile(received, out / MODEL_FILE_ONNX)
    elif fmt == "skops":
        model = load_skops(received)
        shutil.copyfile(received, out / MODEL_FILE_SKOPS)
        onnx = _defer_onnx(log, data.x, spec, out)
    else:
        raise TrainingError(f"the SageMaker job returned a model of unknown format {fmt!r}")
    with log.stage("score"):
        metrics = score(model, data.x[test], data.y[test], spec.problem)
    log(f"metrics on the {len(test)} hold-out rows: {pairs(metrics)}")
    progress(stage="evaluate", current=1, total=1, metrics=metrics)
    return Fitted(
        model,
        metrics,
        dict(spec.hyperparameters),
        holdout=True,
        format=fmt,
        training_job=job_name,
        onnx=onnx,
    )


def _outputs(
    spec: TrainParams,
    data: Tabular,
    fitted: Fitted,
    inputs: Mapping[str, Any],
    context: TaskContext,
    digest: str | None,
) -> dict[str, Any]:
    out = Path(context.artifacts_dir)

    def ref(name: str) -> TableRef | None:
        if not (out / name).is_file():
            return None
        return TableRef(job_id=context.job_id, task=context.task, name=name)

    classes = getattr(fitted.model, "classes_", None) if spec.problem == "classification" else None
    sig = signature(data, spec.problem, list(classes) if classes is not None else None)
    files.write_json(out / files.SIGNATURE_FILE, sig.model_dump(mode="json"))
    files.write_json(out / files.ENVIRONMENT_FILE, files.environment(spec.estimator))
    ranked = files.importances(fitted.model, [f.name for f in data.features])
    if ranked is not None:
        files.write_json(out / files.IMPORTANCES_FILE, ranked)
    if fitted.trials:
        trials = [t.model_dump(mode="json") for t in fitted.trials]
        files.write_json(out / files.TRIALS_FILE, trials)
    signature_ref, environment_ref = ref(files.SIGNATURE_FILE), ref(files.ENVIRONMENT_FILE)
    assert signature_ref is not None  # noqa: S101 - written above
    assert environment_ref is not None  # noqa: S101
    dataset = (inputs.get(spec.input) or {}).get("dataset")
    outputs = TrainOutputs(
        estimator=spec.estimator,
        problem=spec.problem,
        format="onnx" if fitted.format == "onnx" else "skops",
        artifacts=ModelArtifacts(
            skops=ref(MODEL_FILE_SKOPS),
            onnx=ref(MODEL_FILE_ONNX),
            onnx_parity=ref(ONNX_PARITY_FILE),
            signature=signature_ref,
            environment=environment_ref,
            importances=ref(files.IMPORTANCES_FILE),
            trials=ref(files.TRIALS_FILE),
        ),
        metrics=fitted.metrics,
        metrics_std=fitted.metrics_std,
        hyperparameters=fitted.hyperparameters,
        signature=sig,
        rows=len(data.y),
        table_sha256=digest,
        holdout=ref(files.HOLDOUT_FILE) if fitted.holdout else None,
        trials=len(fitted.trials),
        backend=spec.backend,
        training_job=fitted.training_job,
        dataset=_dataset(dataset),
        onnx=fitted.onnx,
        drift_reference=build_reference(data.x, [f.name for f in data.features], data.categorical),
    )
    return outputs.model_dump(mode="json")


def _dataset(value: Any) -> DatasetRef | None:
    """The dataset version the input table came from, when its task said so."""
    if not isinstance(value, Mapping):
        return None
    try:
        return DatasetRef(name=str(value["name"]), version=int(value["version"]))
    except (KeyError, TypeError, ValueError):
        return None
