from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from armillary.contracts.data_tasks import TaskName
from armillary.contracts.drift import DriftReference
from armillary.contracts.registry import MODEL_FILE_ONNX, MODEL_FILE_SKOPS
from armillary.contracts.training import OnnxState

from ..catalog.schemas import Tags

#: The only artifacts a model version may carry.
ArtifactName = Literal[
    "model.skops",
    "model.onnx",
    "signature.json",
    "environment.json",
    "importances.json",
    "trials.json",
]
MODEL_FILES = (MODEL_FILE_SKOPS, MODEL_FILE_ONNX)
Metrics = Annotated[
    dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], float],
    Field(max_length=200),
]


class VersionSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: TaskName = Field(description="The task of the caller's job whose artifacts are copied")
    artifacts: list[ArtifactName] = Field(min_length=1, max_length=6)

    @field_validator("artifacts")
    @classmethod
    def _model_file(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("artifact names must not repeat")
        if not set(value) & set(MODEL_FILES):
            raise ValueError("name model.skops or model.onnx (or both)")
        return value


class VersionCreate(BaseModel):
    """A new version from the artifacts of the caller's job (a job token's request)."""

    model_config = ConfigDict(extra="forbid")
    source: VersionSource
    metrics: Metrics = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    signature: dict[str, Any] = Field(default_factory=dict)
    estimator: str | None = Field(default=None, max_length=128)
    problem: Literal["classification", "regression"] | None = None
    format: Literal["skops", "onnx"]
    environment: Annotated[dict[str, str], Field(max_length=500)] = Field(default_factory=dict)
    description: str = Field(default="", max_length=10_000)
    tags: Tags = Field(default_factory=dict)
    evaluation_task: TaskName | None = None
    drift_reference: DriftReference | None = Field(
        default=None, description="The training rows' distribution per feature (drift)"
    )
    onnx: OnnxState | None = Field(
        default=None,
        description="From the train task: `pending` starts the export job after registration; "
        "`failed` records why the model cannot be exported",
    )


# A file a tracking run logged, relative to the run's artifacts ("model/model.skops"): parts
# in the object store's key alphabet, so no ".." and nothing outside the run's prefix.
RUN_FILE_PATH = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,15}$"


class RunJob(BaseModel):
    """The job and task whose token created a tracking run (the tracking service's record)."""

    model_config = ConfigDict(extra="forbid")
    job_id: UUID
    task: TaskName
    seal: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="The tracking service's seal on the link (a link it did not make is refused)",
    )


class RunSource(BaseModel):
    """Where a tracking run's logged model file is: the run (of the caller's project) and the
    file's path among its artifacts."""

    model_config = ConfigDict(extra="forbid")
    run_id: UUID
    experiment_id: UUID
    path: str = Field(pattern=RUN_FILE_PATH, max_length=1000)
    uri: str = Field(max_length=1000, description="The model's location as MLflow names it")
    run_name: str = Field(default="", max_length=250)
    job: RunJob | None = Field(
        default=None,
        description="The job and task the run was started by, as the tracking service recorded "
        "them; the job must be one of the caller's project that has the task",
    )


class VersionFromRun(BaseModel):
    """A new version from a model file an MLflow run logged (the tracking service's request,
    with the caller's token). The file is copied and checked as ``format`` says."""

    model_config = ConfigDict(extra="forbid")
    source: RunSource
    format: Literal["skops", "onnx"]
    metrics: Metrics = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    signature: dict[str, Any] = Field(default_factory=dict)
    problem: Literal["classification", "regression"] | None = None
    description: str = Field(default="", max_length=10_000)
    tags: Tags = Field(default_factory=dict)


class OnnxAttach(BaseModel):
    """What the version's export job found: ``ready`` with the task whose ``model.onnx`` is
    copied, or ``failed`` with the reason."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ready", "failed"]
    task: TaskName | None = Field(default=None, description="The task that wrote model.onnx")
    reason: str | None = Field(default=None, max_length=1000)


class VersionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=10_000)
    tags: Tags | None = None


class ArtifactOut(BaseModel):
    size_bytes: int
    sha256: str


class VersionOut(BaseModel):
    id: UUID
    model: str
    version: int
    metrics: dict[str, float]
    params: dict[str, Any]
    signature: dict[str, Any]
    estimator: str | None
    problem: str | None
    format: str
    artifacts: dict[str, ArtifactOut]
    onnx: OnnxState | None = Field(
        description="The ONNX export: pending (served from skops meanwhile), ready or failed"
    )
    environment: dict[str, str]
    lineage: dict[str, Any]
    source: str
    description: str
    tags: dict[str, str]
    created_at: datetime
    created_by: UUID


class DatasetUse(BaseModel):
    dataset_id: UUID
    dataset: str
    version: int
    sha256: str
    role: str


class Comparison(BaseModel):
    model: str
    versions: list[int]
    estimators: list[str | None]
    metrics: dict[str, list[float | None]] = Field(
        description="Each metric's value per version, in the order of `versions`"
    )
    params: dict[str, list[Any]] = Field(description="Only the parameters that differ")
    datasets: list[list[DatasetUse]]


class LineageNode(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    kind: Literal["model_version", "job", "workflow_version", "dataset_version"]


class LineageEdge(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    relation: str


class LineageGraph(BaseModel):
    nodes: list[LineageNode]
    edges: list[LineageEdge]


class TrainedOn(BaseModel):
    model: str
    version: int
    model_version_id: UUID
    dataset: str
    dataset_id: UUID
    dataset_version: int
    sha256: str
    role: str
    created_at: datetime
