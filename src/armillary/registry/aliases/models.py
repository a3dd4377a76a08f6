"""Aliases (``champion`` -> version 7) and every move they made, for history, as-of reads and
rollback."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class Alias(Base):
    __tablename__ = "registry_aliases"
    __table_args__ = (Index("uq_registry_aliases_name", "model_id", "name", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    model_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("registry_models.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    model_version_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("registry_model_versions.id", ondelete="CASCADE")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[uuid.UUID] = mapped_column(Uuid)


class AliasMove(Base):
    """Append-only: one row per set, move, rollback or delete of an alias."""

    __tablename__ = "registry_alias_moves"
    __table_args__ = (Index("ix_registry_alias_moves_lookup", "model_id", "alias", "at"),)

    # An increasing integer orders moves made within one clock tick.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("registry_models.id", ondelete="CASCADE")
    )
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[uuid.UUID] = mapped_column(Uuid)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))  # set | move | delete | rollback
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
