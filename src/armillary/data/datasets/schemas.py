from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class DatasetFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


class ProfileStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Checked by the service (400 with a reason) rather than by a pattern (422).
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=10_000)
    tags: list[str] = Field(default_factory=list, max_length=50)


class DatasetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[str] | None = Field(default=None, max_length=50)


class DatasetOut(BaseModel):
    id: UUID
    name: str
    description: str
    tags: list[str]
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    latest_version: int | None


class ColumnSchema(BaseModel):
    name: str
    dtype: str


class VersionOut(BaseModel):
    id: UUID
    dataset: str
    dataset_id: UUID
    number: int
    format: DatasetFormat
    size_bytes: int
    sha256: str
    original_filename: str | None
    row_count: int | None
    columns: list[ColumnSchema]
    profile_status: ProfileStatus
    profile_error: str | None
    parent_version: int | None
    lineage: dict[str, Any]
    created_by: UUID
    created_at: datetime
    deleted: bool


class VersionDetail(VersionOut):
    profile: list[dict[str, Any]] | None


class DownloadLink(BaseModel):
    url: str
    expires_in: int
