"""The ``evaluate`` task type: score a trained model on held-out rows, check thresholds (fail
closed) and compare it with a registered model's champion.

Models are loaded only through :func:`~armillary.kit.model_files.load_skops` (an allow-list
of types) or ONNX Runtime: never unpickled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from armillary.contracts.registry import MODEL_FILE_SKOPS
from armillary.contracts.tasks import TaskContext
from armillary.contracts.training import (
    ChampionComparison,
    ChampionResult,
    EvaluateOutputs,
    EvaluateParams,
    EvaluationFailed,
    Signature,
    ThresholdResult,
)
from armillary.kit.model_files import ModelFileRefused, load_skops
from armillary.kit.model_files import onnx_session as load_onnx_session
from armillary.sdk.task_api import TaskApi, TaskApiError
from armillary.sdk.task_log import TaskLog, number, pairs

from . import story
from .metrics import default_metric, is_better, score
from .onnx_model import OnnxModel
from .tabular import TrainingError, feature_matrix, target_array
from .task_io import fetch_input_table, sha256, task_api, upstream, workdir


def run_evaluate(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """The ``evaluate`` task: see the module docstring."""
    spec = EvaluateParams.model_validate(params)
    trained = upstream(inputs, spec.model, "model")
    try:
        sig = Signature.model_validate(trained.get("signature"))
    except ValueError:
        raise TrainingError(f"task {spec.model!r} is not a train task (no signature)") from None
    log = story.task_log("evaluate", context)
    work = workdir(context, "evaluate")
    with task_api(context) as api:
        with log.stage("read"):
            model = _fetch_model(api, trained, work, log, spec.model)
            path, digest = _fetch_rows(api, spec, trained, inputs, work)
            frame = pl.read_parquet(path)
            x, y = _arrays(frame, sig)
        where = f"task {spec.input}" if spec.input is not None else f"the hold-out of {spec.model}"
        log(
            f"data: {frame.height} rows from {where} (sha256 {digest}), {len(y)} with a target; "
            f"{len(sig.inputs)} features, target {sig.target.name} ({sig.problem})"
        )
        with log.stage("score"):
            metrics = _score(model, x, y, sig)
        log(f"metrics on {len(y)} rows: {pairs(metrics)}")
        with log.stage("compare"):
            champion = _compare(api, spec.compare, frame, metrics, sig, work)
    results = [_threshold(m, metrics.get(m), t.min, t.max) for m, t in spec.thresholds.items()]
    beaten = spec.compare is None or not spec.compare.must_beat
    passed = all(r.passed for r in results) and (beaten or bool(champion and champion.better))
    _log_verdict(log, results, champion, passed)
    outputs = EvaluateOutputs(
        metrics=metrics,
        rows=len(y),
        passed=passed,
        thresholds=results,
        champion=champion,
        table_sha256=digest,
    )
    report = outputs.model_dump(mode="json")
    if not passed:
        raise EvaluationFailed(_why(results, champion, beaten), report)
    return report


def _fetch_model(
    api: TaskApi, trained: Mapping[str, Any], work: Path, log: TaskLog, task: str
) -> Any:
    found = trained.get("artifacts")
    refs = found if isinstance(found, Mapping) else {}
    estimator = trained.get("estimator", "model")
    if isinstance(refs.get("skops"), Mapping):
        log(f"model: {estimator} from task {task} (model.skops)")
        return load_skops(api.fetch_table(refs["skops"], work / MODEL_FILE_SKOPS))
    if isinstance(refs.get("onnx"), Mapping):
        log(f"model: {estimator} from task {task} (model.onnx)")
        session = load_onnx_session(api.fetch_table(refs["onnx"], work / "model.onnx"))
        classes = (trained.get("signature") or {}).get("classes")
        return OnnxModel(session, classes)
    raise TrainingError("the train task stored no model")


def _fetch_rows(
    api: TaskApi,
    spec: EvaluateParams,
    trained: Mapping[str, Any],
    inputs: Mapping[str, Any],
    work: Path,
) -> tuple[Path, str]:
    if spec.input is not None:
        path, digest = fetch_input_table(api, inputs, spec.input, work / "input.parquet")
        return path, digest or sha256(path)
    holdout = trained.get("holdout")
    if not isinstance(holdout, Mapping):
        raise TrainingError(
            f"task {spec.model!r} kept no hold-out rows (k-fold): name an `input` whose table "
            "holds rows to evaluate on"
        )
    path = api.fetch_table(holdout, work / "holdout.parquet")
    return path, sha256(path)


def _arrays(frame: pl.DataFrame, sig: Signature) -> tuple[np.ndarray[Any, Any], Any]:
    if sig.target.name not in frame.columns:
        raise TrainingError(f"the rows have no target column {sig.target.name!r}")
    frame = frame.filter(pl.col(sig.target.name).is_not_null())
    if frame.height == 0:
        raise TrainingError("no rows with a target value to evaluate on")
    return feature_matrix(frame, sig.inputs), target_array(frame, sig.target.name, sig.problem)


def _score(model: Any, x: Any, y: Any, sig: Signature) -> dict[str, float]:
    try:
        return score(model, x, y, sig.problem)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"the model could not score the rows: {exc}") from None


def _threshold(
    metric: str, value: float | None, low: float | None, high: float | None
) -> ThresholdResult:
    # Fail closed: a metric that could not be computed misses every threshold on it.
    known = value is not None and math.isfinite(value)
    passed = known and (low is None or value >= low) and (high is None or value <= high)  # type: ignore[operator]
    return ThresholdResult(
        metric=metric, value=value if known else None, min=low, max=high, passed=bool(passed)
    )


def _compare(
    api: TaskApi,
    compare: ChampionComparison | None,
    frame: pl.DataFrame,
    metrics: Mapping[str, float],
    sig: Signature,
    work: Path,
) -> ChampionResult | None:
    if compare is None:
        return None
    metric = compare.metric or default_metric(sig.problem)
    challenger = metrics.get(metric)
    base = {"model": compare.model, "alias": compare.alias, "metric": metric}
    alias = api.get_alias(compare.model, compare.alias)
    if alias is None:  # nothing to beat yet
        return ChampionResult(
            **base,
            version=None,
            champion_value=None,
            challenger_value=_value(challenger),
            better=challenger is not None,
        )
    version = int(alias["version"])
    record = alias.get("model_version") or {}
    champion_value = _champion_value(api, compare.model, version, record, frame, sig, work, metric)
    return ChampionResult(
        **base,
        version=version,
        champion_value=champion_value,
        challenger_value=_value(challenger),
        # A champion that cannot be scored on these rows cannot be shown to be beaten.
        better=champion_value is not None and is_better(metric, challenger, champion_value),
    )


def _champion_value(
    api: TaskApi,
    model: str,
    version: int,
    record: Mapping[str, Any],
    frame: pl.DataFrame,
    sig: Signature,
    work: Path,
    metric: str,
) -> float | None:
    try:
        champion_sig = Signature.model_validate(record["signature"])
    except (KeyError, TypeError, ValueError):
        champion_sig = sig
    dest = work / "champion" / MODEL_FILE_SKOPS
    try:
        champion = load_skops(api.fetch_model_artifact(model, version, MODEL_FILE_SKOPS, dest))
        x, y = _arrays(frame, champion_sig)
        return score(champion, x, y, champion_sig.problem).get(metric)
    except (TaskApiError, ModelFileRefused, TrainingError, ValueError, TypeError) as exc:
        print(f"[evaluate] the champion could not be scored: {exc}", flush=True)
        return None


def _log_verdict(
    log: TaskLog,
    results: list[ThresholdResult],
    champion: ChampionResult | None,
    passed: bool,
) -> None:
    for r in results:
        limits = []
        if r.min is not None:
            limits.append(f">= {r.min}")
        if r.max is not None:
            limits.append(f"<= {r.max}")
        bounds = " and ".join(limits)
        value = "not computed" if r.value is None else number(r.value)
        log(f"threshold {r.metric} {bounds}: {value}, {'passed' if r.passed else 'MISSED'}")
    if champion is not None:
        if champion.version is None:
            log(f"champion: {champion.model} has no {champion.alias} yet: nothing to beat")
        else:
            log(
                f"champion: {champion.model} v{champion.version} ({champion.alias}) "
                f"{champion.metric}={number(champion.champion_value)}, this model "
                f"{number(champion.challenger_value)}: "
                + ("better" if champion.better else "not better")
            )
    log(f"result: {'passed' if passed else 'FAILED'}")


def _value(value: float | None) -> float:
    # ChampionResult needs a number; a metric that could not be computed shows as NaN-free 0.
    return float(value) if value is not None else 0.0


def _why(results: list[ThresholdResult], champion: ChampionResult | None, beaten: bool) -> str:
    missed = [
        f"{r.metric}={'not computed' if r.value is None else f'{r.value:.4g}'}"
        + (f" (min {r.min})" if r.min is not None else "")
        + (f" (max {r.max})" if r.max is not None else "")
        for r in results
        if not r.passed
    ]
    reasons = [f"threshold(s) missed: {', '.join(missed)}"] if missed else []
    if not beaten and champion is not None and not champion.better:
        reasons.append(
            f"{champion.metric} {champion.challenger_value:.4g} does not beat the "
            f"{champion.alias} (v{champion.version}: {champion.champion_value})"
        )
    return "; ".join(reasons) or "evaluation failed"
