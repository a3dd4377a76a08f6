"""MLflow's run messages (``service.proto``): requests in, JSON out."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from ..wire import (
    INT64_MAX,
    MAX_HISTORY_RESULTS,
    MAX_SEARCH_RESULTS,
    KeyValue,
    MetricIn,
    ParamIn,
    ViewType,
    WireModel,
    external_id,
    number,
)
from .models import LatestMetric, MetricPoint, Run, RunParam, RunTag

RUN_STATUSES = frozenset({"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"})
# MLflow's LogBatch limits (mlflow/utils/validation.py).
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100


class RunRef(WireModel):
    """``run_id``, or ``run_uuid`` (its deprecated name, which clients still send)."""

    run_id: str | None = Field(default=None, max_length=64)
    run_uuid: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _one_id(self) -> RunRef:
        self.run_id = self.run_id or self.run_uuid
        if not self.run_id:
            raise ValueError("run_id is required")
        return self

    @property
    def ref(self) -> str:
        return self.run_id or ""


class CreateRun(WireModel):
    experiment_id: str = Field(default="0", max_length=64)
    user_id: str = Field(default="", max_length=256)
    start_time: int | None = Field(default=None, ge=0, le=INT64_MAX)
    run_name: str | None = Field(default=None, max_length=250)
    tags: list[KeyValue] = Field(default_factory=list, max_length=MAX_BATCH_TAGS)


class UpdateRun(RunRef):
    status: str | None = Field(default=None, max_length=16)
    end_time: int | None = Field(default=None, ge=0, le=INT64_MAX)
    run_name: str | None = Field(default=None, max_length=250)


class LogMetric(RunRef, MetricIn):
    pass


class LogParam(RunRef, ParamIn):
    pass


class SetTag(RunRef, KeyValue):
    pass


class DeleteTag(RunRef):
    key: str = Field(min_length=1, max_length=250)


class LogBatch(RunRef):
    metrics: list[MetricIn] = Field(default_factory=list, max_length=MAX_BATCH_METRICS)
    params: list[ParamIn] = Field(default_factory=list, max_length=MAX_BATCH_PARAMS)
    tags: list[KeyValue] = Field(default_factory=list, max_length=MAX_BATCH_TAGS)


class SearchRuns(WireModel):
    experiment_ids: list[str] = Field(default_factory=list, max_length=100)
    filter: str | None = Field(default=None, max_length=4000)
    run_view_type: ViewType = None
    max_results: int | None = Field(default=None, ge=0, le=MAX_SEARCH_RESULTS)
    order_by: list[str] = Field(default_factory=list, max_length=20)
    page_token: str | None = Field(default=None, max_length=1000)


class MetricHistory(RunRef):
    metric_key: str = Field(min_length=1, max_length=250)
    max_results: int | None = Field(default=None, ge=0, le=MAX_HISTORY_RESULTS)
    page_token: str | None = Field(default=None, max_length=1000)


def run_info_json(run: Run) -> dict[str, Any]:
    run_id = external_id(run.id)
    info: dict[str, Any] = {
        "run_id": run_id,
        "run_uuid": run_id,
        "run_name": run.name,
        "experiment_id": external_id(run.experiment_id),
        "user_id": run.user_id,
        "status": run.status,
        "start_time": run.start_time,
        "artifact_uri": run.artifact_uri,
        "lifecycle_stage": run.lifecycle_stage,
    }
    if run.end_time is not None:
        info["end_time"] = run.end_time
    return info


def metric_json(point: MetricPoint | LatestMetric) -> dict[str, Any]:
    return {
        "key": point.key,
        "value": number(point.value, point.is_nan),
        "timestamp": point.timestamp,
        "step": point.step,
    }


def run_json(
    run: Run, metrics: list[LatestMetric], params: list[RunParam], tags: list[RunTag]
) -> dict[str, Any]:
    return {
        "info": run_info_json(run),
        "data": {
            "metrics": [metric_json(m) for m in sorted(metrics, key=lambda m: m.key)],
            "params": [
                {"key": p.key, "value": p.value} for p in sorted(params, key=lambda p: p.key)
            ],
            "tags": [{"key": t.key, "value": t.value} for t in sorted(tags, key=lambda t: t.key)],
        },
        "inputs": {},
    }
