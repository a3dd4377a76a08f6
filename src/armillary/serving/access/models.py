"""API keys scoped to one deployment, and predict grants for ``user``-role accounts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class ApiKey(Base):
    __tablename__ = "serving_api_keys"
    __table_args__ = (
        # The predict hot path finds a key by its hash alone: one unique-index probe.
        Index("uq_serving_api_keys_hash", "key_hash", unique=True),
        Index("ix_serving_api_keys_deployment", "deployment_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("serving_deployments.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(128))
    # The first characters of the key, shown in lists so owners can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 (hex) of the whole key; the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Grant(Base):
    """Lets one account call predict on one deployment (what ``user``-role accounts need)."""

    __tablename__ = "serving_grants"
    __table_args__ = (Index("uq_serving_grants_user", "deployment_id", "user_id", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("serving_deployments.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    granted_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
