"""Jobs as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Workflow parameters; omitted ones take their defaults"
    )


# Counts stay exact as JSON numbers in every client.
_Count = Annotated[int, Field(ge=0, le=2**53)]
_Metric = Annotated[float, Field(allow_inf_nan=False)]
_MetricName = Annotated[str, Field(min_length=1, max_length=64)]


class ProgressIn(BaseModel):
    """How far a running attempt has got, as its task reports it."""

    model_config = ConfigDict(extra="forbid")

    attempt_id: str = Field(
        min_length=1, max_length=64, description="The attempt reporting (its task context's)"
    )
    stage: str = Field(min_length=1, max_length=64, description="e.g. fold, epoch, trial")
    current: _Count | None = None
    total: _Count | None = None
    message: str = Field(default="", max_length=500)
    metrics: dict[_MetricName, _Metric] = Field(
        default_factory=dict, max_length=50, description="Finite numbers by name"
    )


class ProgressOut(BaseModel):
    stage: str
    current: int | None
    total: int | None
    message: str
    metrics: dict[str, float]
    updated_at: datetime | None


class TaskAttemptOut(BaseModel):
    number: int
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None = Field(
        description="succeeded, failed, timed_out, memory_exceeded, cancelled, crashed, "
        "lost (its lease expired) or refused (a late result after the lease moved on)"
    )
    reason: str | None
    progress: ProgressOut | None = Field(
        default=None, description="What the attempt last reported about how far it got"
    )


class TaskRunOut(BaseModel):
    id: UUID
    name: str
    type: str
    status: str
    attempt: int
    max_attempts: int
    needs: list[str]
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    outputs: dict[str, Any] | None
    artifacts: dict[str, str] | None = None
    report: dict[str, Any] | None = Field(
        default=None, description="The task's data quality report, also when it failed"
    )
    cached_from: UUID | None = None
    isolation: str = Field(
        default="sandbox",
        description="`sandbox`, or `in_process`: the spec let this built-in task skip the sandbox",
    )
    attempts: list[TaskAttemptOut] = []
    progress: ProgressOut | None = Field(default=None, description="The latest attempt's progress")


class JobOut(BaseModel):
    id: UUID
    project_id: UUID
    workflow: str
    workflow_id: UUID
    version: int
    status: str
    trigger: str
    parameters: dict[str, Any]
    created_by: UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    error: str | None


class JobDetail(JobOut):
    tasks: list[TaskRunOut]
