"""Request and response models of the deployments API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from armillary.contracts.registry import ALIAS_PATTERN, MODEL_NAME_PATTERN
from armillary.contracts.serving import DEPLOYMENT_NAME_PATTERN, VARIANT_NAME_PATTERN
from armillary.kit.pagination import MAX_PARAM_INT

MAX_VARIANTS = 10
RoutingMode = Literal["sticky", "random"]
ConfigKind = Literal["create", "update", "rollback", "auto_rollback"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantIn(_In):
    name: str = Field(pattern=VARIANT_NAME_PATTERN, description="Lower-case variant name")
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="A registered model's name")
    version: int | None = Field(
        default=None, ge=1, le=MAX_PARAM_INT, description="A pinned model version"
    )
    alias: str | None = Field(
        default=None, pattern=ALIAS_PATTERN, description="An alias to follow as it moves"
    )
    weight: float = Field(ge=0, le=1_000_000, allow_inf_nan=False)
    shadow: bool = Field(
        default=False, description="Sees a copy of the traffic; its answers are never returned"
    )


class RoutingIn(_In):
    mode: RoutingMode = Field(
        default="sticky",
        description="sticky: one routing key always reaches the same variant (while the "
        "weights stay); random: each request draws",
    )


class AutoRollbackIn(_In):
    enabled: bool = False
    min_labelled: int = Field(default=200, ge=1, le=10_000_000)
    alpha: float = Field(default=0.01, gt=0, lt=1)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)


class PolicyIn(_In):
    auto_rollback: AutoRollbackIn = Field(default_factory=AutoRollbackIn)


class DeploymentCreate(_In):
    name: str = Field(pattern=DEPLOYMENT_NAME_PATTERN)
    description: str = Field(default="", max_length=10_000)
    routing: RoutingIn = Field(default_factory=RoutingIn)
    variants: list[VariantIn] = Field(min_length=1, max_length=MAX_VARIANTS)
    policy: PolicyIn = Field(default_factory=PolicyIn)
    reason: str = Field(default="", max_length=2_000)


class DeploymentUpdate(_In):
    """A new configuration: the variants in full; routing and policy stay when left out."""

    variants: list[VariantIn] = Field(min_length=1, max_length=MAX_VARIANTS)
    routing: RoutingIn | None = None
    policy: PolicyIn | None = None
    description: str | None = Field(default=None, max_length=10_000)
    reason: str = Field(default="", max_length=2_000)


class RollbackIn(_In):
    reason: str = Field(default="", max_length=2_000)


class ResolvedOut(BaseModel):
    model_version: int
    model_version_id: UUID


class VariantOut(BaseModel):
    name: str
    model: str
    version: int | None
    alias: str | None
    weight: float
    shadow: bool
    resolved: ResolvedOut | None = Field(
        description="The model version serving now (null when it can no longer be found)"
    )


class DeploymentOut(BaseModel):
    id: UUID
    name: str
    project: str
    description: str
    config_version: int
    routing: dict[str, Any]
    variants: list[VariantOut]
    policy: dict[str, Any]
    created_by: UUID
    created_at: datetime
    updated_at: datetime


class ConfigOut(BaseModel):
    version: int
    kind: ConfigKind
    variants: list[dict[str, Any]]
    routing: dict[str, Any]
    policy: dict[str, Any]
    reason: str
    restored_version: int | None
    created_by: UUID | None = Field(description="null for the platform's own changes")
    job_id: UUID | None
    created_at: datetime
