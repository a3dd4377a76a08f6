"""Jobs as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Workflow parameters; omitted ones take their defaults"
    )


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
    attempts: list[TaskAttemptOut] = []


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
