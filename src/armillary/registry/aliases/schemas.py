from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from armillary.kit.pagination import MAX_PARAM_INT

from ..versions.schemas import VersionOut


class AliasSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=MAX_PARAM_INT)
    reason: str = Field(default="", max_length=2_000)


class AliasReason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2_000)


class AliasOut(BaseModel):
    alias: str
    version: int
    model_version: VersionOut


class AliasMoveOut(BaseModel):
    alias: str
    kind: Literal["set", "move", "delete", "rollback"]
    from_version: int | None
    to_version: int | None
    actor: UUID
    job_id: UUID | None
    reason: str
    at: datetime
