"""Contracts of the model registry: the ``register`` task type and the registry's events.

``ModelVersionRegistered`` tells the data service which dataset versions a model version was
trained on, so that it holds them (a held version is not deleted unless an admin forces it).
``AliasMoved`` tells whoever follows an alias (the prediction service) to re-resolve it.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from .data_tasks import TaskName
from .events import Event
from .task_base import TaskTypeContract

#: Registered model names (as dataset names).
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: Alias names: ``champion``, ``challenger`` or any lower-case name.
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
#: The artifacts a model version may carry, and the only files loaded as models.
MODEL_FILE_SKOPS = "model.skops"
MODEL_FILE_ONNX = "model.onnx"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterParams(_Params):
    model: TaskName = Field(description="The upstream `train` task whose model is registered")
    evaluation: TaskName | None = Field(
        default=None,
        description="An upstream `evaluate` task: its metrics are recorded as `eval_<metric>`",
    )
    name: str = Field(pattern=MODEL_NAME_PATTERN, description="The registered model's name")
    description: str = Field(default="", max_length=10_000)
    tags: dict[str, str] = Field(default_factory=dict, max_length=50)
    alias: str | None = Field(
        default=None,
        pattern=ALIAS_PATTERN,
        description="Point this alias at the new version (e.g. `challenger`)",
    )


class RegisterOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    version: int = Field(ge=1)
    model_version_id: str
    alias: str | None = None


class DatasetVersionUsed(BaseModel):
    """A dataset version a model version was trained or evaluated on."""

    model_config = ConfigDict(extra="forbid")
    dataset_id: UUID
    dataset: str
    version: int
    sha256: str


class ModelVersionRegistered(Event):
    TYPE: ClassVar[str] = "registry.model_version_registered"
    project_id: UUID
    model_id: UUID
    model: str
    model_version_id: UUID
    version: int
    datasets: list[DatasetVersionUsed]
    occurred_at: datetime


class AliasMoved(Event):
    """An alias was set, moved (rollback too) or deleted (``to_version`` None)."""

    TYPE: ClassVar[str] = "registry.alias_moved"
    project_id: UUID
    model_id: UUID
    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    occurred_at: datetime


REGISTER = TaskTypeContract(
    name="register",
    description=(
        "Registers the model of the upstream `train` task as the next version of registered "
        "model `name`, with its metrics (and those of an upstream `evaluate` task), "
        "parameters, signature, artifacts and lineage; optionally points an alias at it."
    ),
    params=RegisterParams,
    outputs=RegisterOutputs,
    input_params=("model", "evaluation"),
    job_actions=("model:alias",),
)

REGISTRY_TASK_TYPES: dict[str, TaskTypeContract] = {REGISTER.name: REGISTER}
