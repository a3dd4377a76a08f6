"""The ``train`` task's result and its search trials as runs of the tracking service (ADR 0041):
a parent run named after the task, with the final hyperparameters and metrics, and one nested
run per trial (its hyperparameters and cross-validated metric means), in an experiment named
after the workflow (or ``tracking.experiment``). So runs of the platform's training and of
one's own code compare in one place.

They are recorded once the model is fitted, through the tracking service's MLflow REST API
with the job's token (``armillary.training`` imports no other service, so not the
``armillary.tracking`` SDK's module: the same calls, through :class:`TaskApi`). The server
links the runs to the job and the task. Tracking is a record of the training, not part of it:
a failure is a warning in the task's log, never the task's failure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from armillary.contracts.training import TrainParams, Trial
from armillary.sdk.task_api import TaskApi, TaskApiError
from armillary.sdk.task_log import TaskLog

if TYPE_CHECKING:
    from .train import Fitted

SOURCE_TAG = "armillary.source"
SOURCE = "train-task"
# MLflow's log-batch limits.
_BATCH_PARAMS = 100
_BATCH_METRICS = 1000
_MAX_PARAM_VALUE = 6000


def record(api: TaskApi, spec: TrainParams, fitted: Fitted, task: str, log: TaskLog) -> str | None:
    """The parent run's id, or None when tracking is off or failed (logged as a warning)."""
    if not spec.tracking.enabled:
        return None
    try:
        experiment = spec.tracking.experiment or str(api.job().get("workflow") or "train")
        return _record(api, experiment, spec, fitted, task, log)
    except TaskApiError as exc:
        log(
            f"warning: tracking: the runs were not recorded ({exc.status} {exc.title}: "
            f"{exc.detail}); the training is unaffected"
        )
    except Exception as exc:  # tracking must never fail the training
        log(
            f"warning: tracking: the runs were not recorded ({type(exc).__name__}); "
            "the training is unaffected"
        )
    return None


def _record(
    api: TaskApi, experiment: str, spec: TrainParams, fitted: Fitted, task: str, log: TaskLog
) -> str:
    experiment_id = _experiment_id(api, experiment)
    tags = {
        SOURCE_TAG: SOURCE,
        "estimator": spec.estimator,
        "validation": spec.validation.method,
        "backend": spec.backend,
    }
    parent = _create(api, experiment_id, task, tags)
    params = {"estimator": spec.estimator, **fitted.hyperparameters}
    metrics = dict(fitted.metrics)
    metrics.update({f"{key}_std": value for key, value in fitted.metrics_std.items()})
    _log(api, parent, params, metrics)
    for trial in fitted.trials:
        _trial(api, experiment_id, parent, trial)
    _finish(api, parent)
    log(
        f"tracking: run {parent} in experiment {experiment!r}"
        + (f", with {len(fitted.trials)} trial runs" if fitted.trials else "")
    )
    return parent


def _experiment_id(api: TaskApi, name: str) -> str:
    by_name = f"experiments/get-by-name?experiment_name={quote(name, safe='')}"
    try:
        return str(api.tracking(by_name, method="GET")["experiment"]["experiment_id"])
    except TaskApiError as exc:
        if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        return str(api.tracking("experiments/create", {"name": name})["experiment_id"])
    except TaskApiError as exc:
        if _code(exc) != "RESOURCE_ALREADY_EXISTS":
            raise
        # Another task of the project made it meanwhile.
        return str(api.tracking(by_name, method="GET")["experiment"]["experiment_id"])


def _code(exc: TaskApiError) -> str | None:
    code = exc.body.get("error_code") if isinstance(exc.body, dict) else None
    return code if isinstance(code, str) else None


def _now() -> int:
    return time.time_ns() // 1_000_000


def _create(
    api: TaskApi, experiment_id: str, name: str, tags: Mapping[str, str], parent: str | None = None
) -> str:
    pairs = [{"key": k, "value": v} for k, v in tags.items()]
    if parent is not None:
        pairs.append({"key": "mlflow.parentRunId", "value": parent})
    body = {"experiment_id": experiment_id, "run_name": name, "start_time": _now(), "tags": pairs}
    return str(api.tracking("runs/create", body)["run"]["info"]["run_id"])


def _log(
    api: TaskApi,
    run_id: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
) -> None:
    now = _now()
    param_items = [{"key": str(k), "value": _param(v)} for k, v in params.items()]
    metric_items = [
        {"key": str(k), "value": float(v), "timestamp": now, "step": 0}
        for k, v in metrics.items()
        if isinstance(v, int | float) and math.isfinite(v)
    ]
    tag_items = [{"key": k, "value": v} for k, v in (tags or {}).items()]
    first = True
    while first or param_items or metric_items:
        body = {
            "run_id": run_id,
            "params": param_items[:_BATCH_PARAMS],
            "metrics": metric_items[:_BATCH_METRICS],
            "tags": tag_items if first else [],
        }
        api.tracking("runs/log-batch", body)
        param_items, metric_items = param_items[_BATCH_PARAMS:], metric_items[_BATCH_METRICS:]
        first = False


def _param(value: Any) -> str:
    return str(value)[:_MAX_PARAM_VALUE]


def _trial(api: TaskApi, experiment_id: str, parent: str, trial: Trial) -> None:
    tags = {SOURCE_TAG: SOURCE, "trial": str(trial.number), "best": str(trial.best).lower()}
    run_id = _create(api, experiment_id, f"trial-{trial.number}", tags, parent)
    _log(api, run_id, trial.hyperparameters, trial.metrics)
    # A trial whose fit failed has no metrics: FAILED, as the search recorded it.
    _finish(api, run_id, "FINISHED" if trial.metrics else "FAILED")


def _finish(api: TaskApi, run_id: str, status: str = "FINISHED") -> None:
    api.tracking("runs/update", {"run_id": run_id, "status": status, "end_time": _now()})
