"""What other services ask the identity service, and what it answers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class ProjectFields(BaseModel):
    """A project's own fields, carried in the access answer so that the project's page needs
    no database read while the answer is cached. ``identity.project_changed`` and
    ``identity.project_deleted`` drop the cached answers that hold them."""

    name: str
    description: str
    created_by: UUID
    created_at: datetime
    updated_at: datetime


class ProjectAccessInfo(BaseModel):
    """What a caller may do in one project: its effective role there (after role caps), and
    the project's fields (None from an identity service that predates them)."""

    project_id: UUID
    project_slug: str
    role: ProjectRole
    project: ProjectFields | None = None


# Bounds of a job token's lifetime: long enough for a slow task, short enough that a leaked
# one soon stops working.
JOB_TOKEN_MIN_TTL_SECONDS = 30
JOB_TOKEN_MAX_TTL_SECONDS = 86_400
JOB_TOKEN_SCOPE = "job"  # noqa: S105 - a scope name, not a secret


class JobTokenRequest(BaseModel):
    """Asks identity for an access token a job's tasks use: the rights of ``user_id`` (who
    started the job), capped to ``project_id``."""

    model_config = ConfigDict(extra="forbid")

    user_id: UUID
    project_id: UUID
    job_id: UUID
    ttl_seconds: int = Field(ge=JOB_TOKEN_MIN_TTL_SECONDS, le=JOB_TOKEN_MAX_TTL_SECONDS)
    # The attempt the token is for: it stops working when that attempt ends or loses its lease
    # (without them, when the job ends). The task type may add actions to the token's own.
    task: str | None = Field(default=None, min_length=1, max_length=64)
    attempt: int | None = Field(default=None, ge=1)
    task_type: str | None = Field(default=None, min_length=1, max_length=64)
    # The datasets the job's tasks name (contracts.tasks.declared_datasets): the token may
    # read those it reads or writes, and write those it writes. None: not limited by name.
    datasets_read: list[str] | None = Field(default=None, max_length=1000)
    datasets_write: list[str] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _attempt_with_its_task(self) -> JobTokenRequest:
        if (self.task is None) != (self.attempt is None):
            raise ValueError("give both `task` and `attempt`, or neither")
        return self


class JobToken(BaseModel):
    """A job-scoped access token. A credential: never log it, put it in argv or task output."""

    token: str = Field(repr=False)
    expires_at: datetime


class JWKS(BaseModel):
    keys: list[dict[str, Any]]
