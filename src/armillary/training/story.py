"""What the training task types tell their log (see :mod:`armillary.sdk.task_log`): the data's
shape, the split, each search trial, the metrics, the ONNX check and the artifacts' sizes.

Hyperparameters and metric names are logged; the table's values never are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from armillary.contracts.tasks import TaskContext
from armillary.contracts.training import Search, TrainParams, Trial
from armillary.sdk.task_log import TaskLog, names, number, pairs, size

from .tabular import Tabular


def task_log(task_type: str, context: TaskContext) -> TaskLog:
    return TaskLog(task_type, hide=[context.token()])


def data(log: TaskLog, spec: TrainParams, table: Tabular, read: int, digest: str | None) -> None:
    dropped = read - len(table.y)
    log(
        f"data: {read} rows read (sha256 {digest}), {len(table.y)} with a target"
        + (f" ({dropped} without one dropped)" if dropped else "")
    )
    categorical = [table.features[i].name for i in table.categorical]
    log(
        f"columns: {len(table.features)} features ({names(f.name for f in table.features)}), "
        f"{len(categorical)} categorical" + (f" ({names(categorical)})" if categorical else "")
    )
    target = f"target: {spec.target} ({table.target.dtype}), {spec.problem}"
    if spec.problem == "classification":
        classes = sorted({str(label) for label in table.y.tolist()})
        target += f", {len(classes)} classes ({names(classes)})"
    log(target)


def split(log: TaskLog, spec: TrainParams, rows: int, test: int | None) -> None:
    v = spec.validation
    stratified = spec.problem == "classification" and v.stratify
    how = f"{'stratified by class' if stratified else 'not stratified'}, seed {v.seed}"
    if test is None:
        log(
            f"split: {v.folds}-fold cross-validation over {rows} rows ({how}); "
            "the final model is refitted on every row"
        )
    else:
        log(
            f"split: hold-out, {rows - test} training rows and {test} test rows "
            f"(test_size {number(v.test_size)}, {how})"
        )


def search_plan(log: TaskLog, search: Search, candidates: int, rows: int, metric: str) -> None:
    kind = "grid search" if search.method == "grid" else "random search"
    log(
        f"search: {kind} over {candidates} candidates, {search.folds}-fold cross-validation "
        f"on {rows} training rows, scored by {metric}"
    )


def trial(log: TaskLog, done: Trial, total: int, metric: str, error: str | None) -> None:
    head = f"trial {done.number}/{total}: {pairs(done.hyperparameters)}"
    if error is not None:
        log(f"{head}: failed: {error}")
        return
    score = done.metrics.get(metric)
    log(f"{head}: {metric}={number(score)} ({pairs(done.metrics)})")


def best(log: TaskLog, chosen: Trial, metric: str) -> None:
    log(
        f"search: best trial {chosen.number}, {metric}={number(chosen.metrics.get(metric))}: "
        f"{pairs(chosen.hyperparameters)}"
    )


def metrics_with_spread(metrics: Mapping[str, float], std: Mapping[str, float]) -> str:
    def one(name: str, value: float) -> str:
        spread = f" ± {number(std[name])}" if name in std else ""
        return f"{name}={number(value)}{spread}"

    return ", ".join(one(name, value) for name, value in metrics.items())


def onnx_deferred(log: TaskLog, rows: int) -> None:
    log(
        f"onnx: pending: exported and checked against model.skops on {rows} rows after the "
        "model is registered, by the version's export job; served from model.skops until then"
    )


def onnx_unsupported(log: TaskLog, reason: str) -> None:
    log(f"onnx: {reason}; the model is served from model.skops")


def onnx(log: TaskLog, kept: bool, checked_rows: int) -> None:
    if kept:
        log(
            f"onnx: exported; parity check passed: it predicts what model.skops does on "
            f"{checked_rows} rows of the table"
        )
    else:
        log("onnx: not kept (the reason is above); the model is served from model.skops")


def artifacts(log: TaskLog, directory: Path) -> None:
    for path in sorted(directory.iterdir()):
        if path.is_file():
            log(f"artifact {path.name}: {size(path.stat().st_size)}")


def hyperparameters(values: Mapping[str, Any]) -> str:
    return pairs(values) if values else "defaults"
