from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class ScheduleOut(BaseModel):
    cron: str
    catchup: str
    max_catchup_runs: int


class WorkflowOut(BaseModel):
    id: UUID
    name: str
    description: str
    schedule: ScheduleOut | None
    latest_version: int
    created_by: UUID
    created_at: datetime
    updated_at: datetime


class VersionOut(BaseModel):
    id: UUID
    workflow: str
    number: int
    spec_sha256: str
    created_by: UUID
    created_at: datetime


class VersionDetail(VersionOut):
    spec: dict[str, Any]


class ApplyOut(BaseModel):
    workflow: WorkflowOut
    version: VersionDetail
    created: bool  # False: the spec equals the latest version's, which is returned
