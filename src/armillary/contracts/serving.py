"""Contracts of the prediction service: the ``deploy`` and ``batch_predict`` task types and the
``serving.deployment_changed`` event.

``deploy`` puts the version an upstream ``register`` task registered into a deployment as a
variant at a share of the traffic (a canary) or as the shadow; ``batch_predict`` scores an
upstream table with a deployment's primary variant, or a registered version, and stores the
predictions as a dataset version whose lineage names the model version.
"""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .data_tasks import (
    DATASET_NAME_PATTERN,
    ColumnInfo,
    ColumnName,
    DatasetName,
    TableRef,
    TaskName,
)
from .events import Event
from .registry import ALIAS_PATTERN, MODEL_NAME_PATTERN
from .task_base import TaskTypeContract

#: Deployment names (as dataset names: they appear in URLs and in ``{project}.{deployment}``).
DEPLOYMENT_NAME_PATTERN = DATASET_NAME_PATTERN
#: Variant names: lower-case, like aliases (``champion``, ``challenger``, ``v2-canary``).
VARIANT_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
#: The columns ``batch_predict`` adds to the kept input columns.
PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "proba_"

DeploymentName = Annotated[str, Field(pattern=DEPLOYMENT_NAME_PATTERN)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- deploy ----------------------------------------------------------------------------------


class DeployParams(_Params):
    registration: TaskName = Field(
        description="The upstream `register` task whose registered version is deployed"
    )
    deployment: DeploymentName = Field(description="The project's deployment to change")
    variant: str = Field(
        default="challenger",
        pattern=VARIANT_NAME_PATTERN,
        description="The variant that serves the new version (replaced if it exists)",
    )
    weight: float = Field(
        default=10.0,
        gt=0,
        le=100,
        description="Percent of the traffic the variant gets; the other variants are scaled "
        "down in proportion to share the rest (ignored for a shadow)",
    )
    shadow: bool = Field(
        default=False,
        description="Deploy as the shadow: it sees a copy of the traffic, its answers are "
        "recorded but never returned (replaces any other shadow)",
    )
    create: bool = Field(
        default=True,
        description="Create the deployment, with this version as its only variant at 100%, "
        "when it does not exist",
    )


class DeployOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deployment: str
    config_version: int = Field(ge=1, description="The deployment configuration now in force")
    variant: str
    model: str
    model_version: int = Field(ge=1)
    weight: float = Field(ge=0, description="The variant's weight in the new configuration")
    created: bool = Field(default=False, description="Whether the deployment was created")


# -- batch_predict ---------------------------------------------------------------------------


class BatchPredictParams(_Params):
    deployment: DeploymentName | None = Field(
        default=None, description="Predict with this deployment's primary variant"
    )
    model: str | None = Field(
        default=None,
        pattern=MODEL_NAME_PATTERN,
        description="Or predict with a registered model directly (give `version` or `alias`)",
    )
    version: int | None = Field(default=None, ge=1, description="The registered version")
    alias: str | None = Field(
        default=None, pattern=ALIAS_PATTERN, description="Or the alias naming the version"
    )
    input: TaskName = Field(description="The upstream task whose table is scored")
    dataset: DatasetName = Field(description="Dataset (created if missing) of the predictions")
    keep_columns: list[ColumnName] | None = Field(
        default=None,
        max_length=10_000,
        description="Input columns copied beside the predictions (default: every column)",
    )
    probabilities: bool = Field(
        default=True, description="Add a `proba_<class>` column per class (classifiers)"
    )
    batch_rows: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Rows scored per model call"
    )
    description: str = Field(default="", max_length=10_000)

    @model_validator(mode="after")
    def _one_model(self) -> BatchPredictParams:
        if (self.deployment is None) == (self.model is None):
            raise ValueError("give exactly one of `deployment` or `model`")
        if self.deployment is not None and (self.version is not None or self.alias is not None):
            raise ValueError("`version` and `alias` apply to a `model`, not to a `deployment`")
        if self.model is not None and (self.version is None) == (self.alias is None):
            raise ValueError("with `model`, give exactly one of `version` or `alias`")
        if self.keep_columns is not None:
            if len(set(self.keep_columns)) != len(self.keep_columns):
                raise ValueError("`keep_columns` must not name a column twice")
            clash = [c for c in self.keep_columns if _is_output_column(c)]
            if clash:
                raise ValueError(
                    f"`keep_columns` must not name the output column(s) {', '.join(clash)}"
                )
        return self


def _is_output_column(name: str) -> bool:
    return name == PREDICTION_COLUMN or name.startswith(PROBABILITY_PREFIX)


class BatchPredictOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    version: int = Field(ge=1)
    created: bool = Field(description="False when identical bytes already were a version")
    table: TableRef
    rows: int = Field(ge=0)
    columns: list[ColumnInfo]
    sha256: str
    model: str
    model_version: int = Field(ge=1)
    deployment: str | None = None
    variant: str | None = Field(default=None, description="The deployment variant used")


# -- events ----------------------------------------------------------------------------------


class DeploymentChanged(Event):
    """A deployment was created, reconfigured, rolled back or deleted: serving processes
    reload its routing (``config_version`` 0 when it was deleted)."""

    TYPE: ClassVar[str] = "serving.deployment_changed"
    project_id: UUID
    deployment_id: UUID
    name: str
    config_version: int


class ApiKeyRevoked(Event):
    """A deployment's API key was revoked: serving processes mark it revoked in the key
    cache (retried until the cache takes it)."""

    TYPE: ClassVar[str] = "serving.api_key_revoked"
    deployment_id: UUID
    key_id: UUID
    key_hash: str


DEPLOY = TaskTypeContract(
    name="deploy",
    description=(
        "Puts the version the upstream `register` task registered into deployment "
        "`deployment` as variant `variant` at `weight` percent of the traffic (the other "
        "variants share the rest in proportion), or as the shadow; creates the deployment "
        "with that single variant when it does not exist. Every change is a new, audited "
        "configuration version that can be rolled back."
    ),
    params=DeployParams,
    outputs=DeployOutputs,
    input_params=("registration",),
    server_checks={},
    job_actions=("deployment:write",),
)
BATCH_PREDICT = TaskTypeContract(
    name="batch_predict",
    description=(
        "Scores the table of the upstream task `input` with a deployment's primary variant "
        "(or a registered model's version or alias) in batches, and stores the kept columns "
        "with `prediction` (and `proba_<class>`) as the next version of dataset `dataset`, "
        "with lineage naming the job, the input and the model version."
    ),
    params=BatchPredictParams,
    writes_datasets=("dataset",),
    outputs=BatchPredictOutputs,
    input_params=("input",),
)

SERVING_TASK_TYPES: dict[str, TaskTypeContract] = {c.name: c for c in (DEPLOY, BATCH_PREDICT)}
