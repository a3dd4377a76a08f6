from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from armillary.contracts.identity import PlatformRole, ProjectRole

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(pattern=SLUG_PATTERN, description="URL name: lowercase letters, digits, '-'")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    slug: str
    name: str
    description: str
    created_by: UUID
    created_at: datetime
    updated_at: datetime


class ProjectWithRole(ProjectOut):
    my_role: ProjectRole


class MembershipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: ProjectRole


class MemberOut(BaseModel):
    user_id: UUID
    email: str
    name: str
    platform_role: PlatformRole
    role: ProjectRole
    created_at: datetime
