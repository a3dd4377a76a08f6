from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="What the key is for")


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    created_by: UUID
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(BaseModel):
    id: UUID
    name: str
    prefix: str
    key: str = Field(description="Shown this once: send it as `X-API-Key`")
    created_at: datetime


class GrantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    user_id: UUID
    granted_by: UUID
    at: datetime
