"""What other services ask the identity service, and what it answers."""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class PlatformRole(StrEnum):
    ADMIN = "admin"
    DATA_SCIENTIST = "data_scientist"
    USER = "user"


class ProjectRole(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


class PrincipalInfo(BaseModel):
    """The current state of an account, as the identity service knows it."""

    user_id: UUID
    email: str
    name: str
    role: PlatformRole
    active: bool


class ProjectAccessInfo(BaseModel):
    """What a caller may do in one project: its effective role there (after role caps)."""

    project_id: UUID
    project_slug: str
    role: ProjectRole


class JWKS(BaseModel):
    keys: list[dict[str, Any]]
