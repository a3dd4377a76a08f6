from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class Dataset(Base):
    __tablename__ = "data_datasets"
    __table_args__ = (
        # Names are unique among live datasets of a project; a deleted name can be reused.
        Index(
            "uq_data_datasets_live_name",
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
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Allocates version numbers under a row lock.
    version_counter: Mapped[int] = mapped_column(Integer, default=0)


class DatasetVersion(Base):
    __tablename__ = "data_dataset_versions"
    __table_args__ = (
        Index("uq_data_dataset_versions_number", "dataset_id", "number", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("data_datasets.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    number: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    object_key: Mapped[str] = mapped_column(String(512))
    original_filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    row_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    columns: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    profile: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    profile_status: Mapped[str] = mapped_column(String(16), default="pending")
    profile_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("data_dataset_versions.id"), nullable=True
    )
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
