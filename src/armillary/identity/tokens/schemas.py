from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

# A personal access token lives at most this long (issue 20); a default that makes people
# renew monthly rather than ask for the maximum.
MAX_DAYS = 90
DEFAULT_DAYS = 30


class PersonalTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    project: str = Field(min_length=1, max_length=64, description="Project slug or id")
    expires_in_days: int = Field(default=DEFAULT_DAYS, ge=1, le=MAX_DAYS)


class PersonalTokenOut(BaseModel):
    """A token as listed: never the token itself."""

    model_config = ConfigDict(from_attributes=True)
    id: UUID
    user_id: UUID
    project_id: UUID
    name: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class PersonalTokenIssued(PersonalTokenOut):
    """The answer to creating a token: the only time the token is shown."""

    token: str = Field(repr=False)
