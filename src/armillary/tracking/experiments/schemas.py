"""MLflow's experiment messages (``service.proto``): requests in, JSON out."""

from __future__ import annotations

from pydantic import Field

from ..wire import (
    MAX_NAME_LENGTH,
    MAX_SEARCH_RESULTS,
    KeyValue,
    ViewType,
    WireModel,
    external_id,
)
from .models import Experiment, ExperimentTag


class CreateExperiment(WireModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    artifact_location: str | None = None
    tags: list[KeyValue] = Field(default_factory=list, max_length=100)


class ExperimentRef(WireModel):
    experiment_id: str = Field(min_length=1, max_length=64)


class ExperimentByName(WireModel):
    experiment_name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)


class UpdateExperiment(ExperimentRef):
    new_name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)


class SetExperimentTag(ExperimentRef, KeyValue):
    pass


class DeleteExperimentTag(ExperimentRef):
    key: str = Field(min_length=1, max_length=250)


class SearchExperiments(WireModel):
    max_results: int | None = Field(default=None, ge=0, le=MAX_SEARCH_RESULTS)
    page_token: str | None = Field(default=None, max_length=1000)
    filter: str | None = Field(default=None, max_length=4000)
    order_by: list[str] = Field(default_factory=list, max_length=20)
    view_type: ViewType = None


def experiment_json(experiment: Experiment, tags: list[ExperimentTag]) -> dict[str, object]:
    return {
        "experiment_id": external_id(experiment.id),
        "name": experiment.name,
        "artifact_location": experiment.artifact_location,
        "lifecycle_stage": experiment.lifecycle_stage,
        "last_update_time": experiment.last_update_time,
        "creation_time": experiment.creation_time,
        "tags": [{"key": t.key, "value": t.value} for t in sorted(tags, key=lambda t: t.key)],
    }
