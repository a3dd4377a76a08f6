"""The registered-model table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class RegisteredModel(Base):
    __tablename__ = "registry_models"
    __table_args__ = (
        # Unique among live models of a project; a deleted model's name can be reused.
        Index(
            "uq_registry_models_live_name",
            "project_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The identity service's project id; no foreign key across service boundaries.
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Alias name -> the least project role that may move it ("editor" or "owner").
    alias_policies: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Allocates version numbers under a row lock.
    version_counter: Mapped[int] = mapped_column(Integer, default=0)
