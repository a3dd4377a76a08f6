from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, utcnow


class PersonalAccessToken(Base):
    """A personal access token issued to a user for one project (ADR 0040). Only the
    SHA-256 of its ``jti`` is kept: the token itself is shown once and never stored."""

    __tablename__ = "identity_personal_access_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("identity_users.id", ondelete="CASCADE"), index=True
    )
    # No foreign key to the project: a deleted project's tokens stop working through the
    # access check, and their rows stay for the user's list and the audit trail.
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    name: Mapped[str] = mapped_column(String(64))
    jti_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key that signed it: that key stays published until the token expires (ADR 0040).
    kid: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
