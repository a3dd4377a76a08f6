from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class PresignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(min_length=1, max_length=2048, description="s3://bucket/key")


class PresignedObject(BaseModel):
    url: str
    expires_at: datetime
