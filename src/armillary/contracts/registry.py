"""Contracts of the model registry: the ``register`` task type and the registry's events.

``ModelVersionRegistered`` tells the data service which dataset versions a model version was
trained on, so that it holds them (a held version is not deleted unless an admin forces it).
``AliasMoved`` tells whoever follows an alias (the prediction service) to re-resolve it.
``OnnxExportRequested`` asks the workflows service to run a version's ONNX export as a job of
its own, after the training job (ADR 0018); ``ModelVersionOnnxChanged`` tells the prediction
service that a version's model files changed (``model.onnx`` arrived), so it loads them again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from .data_tasks import TaskName
from .events import Event
from .task_base import TaskTypeContract
from .training import OnnxExportParams

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


class OnnxExportRequested(Event):
    """Version ``version`` was registered with its ONNX export ``pending``: run job
    ``export_job_id`` (the only job the registry accepts the result from) with the tasks of
    :func:`onnx_export_tasks`, as a job of ``source_job_id``'s workflow, started by
    ``requested_by``."""

    TYPE: ClassVar[str] = "registry.onnx_export_requested"
    project_id: UUID
    model_id: UUID
    model: str
    model_version_id: UUID
    version: int
    export_job_id: UUID
    source_job_id: UUID
    source_task: str
    requested_by: UUID
    occurred_at: datetime


class ModelVersionOnnxChanged(Event):
    """A version's ONNX export finished: ``ready`` (``model.onnx`` is among its artifacts) or
    ``failed`` (it keeps serving from ``model.skops``)."""

    TYPE: ClassVar[str] = "registry.model_version_onnx_changed"
    project_id: UUID
    model_id: UUID
    model: str
    model_version_id: UUID
    version: int
    status: Literal["ready", "failed"]
    occurred_at: datetime


#: The tasks of a version's ONNX export job: ``onnx_export`` (training) converts and checks,
#: ``attach_onnx`` (registry) hands the result to the version.
EXPORT_TASK = "export"
ATTACH_TASK = "attach"


def onnx_export_tasks(event: OnnxExportRequested, parity_file: str) -> list[dict[str, Any]]:
    """The export job's tasks, as a workflow spec would list them."""
    export = OnnxExportParams.model_validate(
        {
            "model": event.model,
            "version": event.version,
            "parity": {
                "job_id": str(event.source_job_id),
                "task": event.source_task,
                "name": parity_file,
            },
        }
    )
    attach = AttachOnnxParams(model=event.model, version=event.version, export=EXPORT_TASK)
    return [
        {
            "name": EXPORT_TASK,
            "type": "onnx_export",
            "params": export.model_dump(mode="json"),
            "timeout_seconds": 3600,
        },
        {
            "name": ATTACH_TASK,
            "type": "attach_onnx",
            "params": attach.model_dump(mode="json"),
            "needs": [EXPORT_TASK],
            "retries": 2,
        },
    ]


class AttachOnnxParams(_Params):
    model: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int = Field(ge=1)
    export: TaskName = Field(description="The upstream `onnx_export` task")


class AttachOnnxOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    version: int
    onnx: Literal["ready", "failed"]


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

ATTACH_ONNX = TaskTypeContract(
    name="attach_onnx",
    description=(
        "Gives version `version` of `model` the model.onnx its upstream `onnx_export` task "
        "produced (or records why there is none). Accepted only from the export job the "
        "registry started for that version (ADR 0018)."
    ),
    params=AttachOnnxParams,
    outputs=AttachOnnxOutputs,
    input_params=("export",),
)

REGISTRY_TASK_TYPES: dict[str, TaskTypeContract] = {c.name: c for c in (REGISTER, ATTACH_ONNX)}
