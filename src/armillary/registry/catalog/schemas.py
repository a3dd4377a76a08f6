from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from armillary.contracts.registry import ALIAS_PATTERN

TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TagValue = Annotated[str, StringConstraints(max_length=512)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=50)]
AliasName = Annotated[str, StringConstraints(pattern=ALIAS_PATTERN)]
AliasPolicy = Literal["editor", "owner"]


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Checked by the service (400 with a reason) rather than by a pattern (422).
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=10_000)
    tags: Tags = Field(default_factory=dict)


class ModelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=10_000)
    tags: Tags | None = None
    alias_policies: Annotated[dict[AliasName, AliasPolicy], Field(max_length=50)] | None = Field(
        default=None,
        description="Who may move each alias: 'editor' (default) or 'owner' only (owners only)",
    )


class ModelOut(BaseModel):
    id: UUID
    name: str
    description: str
    tags: dict[str, str]
    alias_policies: dict[str, str]
    created_by: UUID
    created_at: datetime
    updated_at: datetime
    latest_version: int | None
    aliases: dict[str, int]


class ModelDetail(ModelOut):
    latest: dict[str, Any] | None = Field(description="The latest version's record")
