"""Deployments and their immutable, numbered configurations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class Deployment(Base):
    __tablename__ = "serving_deployments"
    __table_args__ = (
        # Unique among live deployments of a project; a deleted one's name can be reused.
        Index(
            "uq_serving_deployments_live_name",
            "project_id",
            "name",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
        Index("ix_serving_deployments_slug_name", "project_slug", "name"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The identity service's project; no foreign key across service boundaries. Slugs never
    # change, so predict resolves ``{project}`` without asking identity.
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    project_slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    config_version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DeploymentConfig(Base):
    """Append-only: one row per configuration a deployment ever had."""

    __tablename__ = "serving_deployment_configs"
    __table_args__ = (
        Index("uq_serving_deployment_configs_version", "deployment_id", "version", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("serving_deployments.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    # [{name, model, version, alias, weight, shadow}], as the caller gave them.
    variants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    routing: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))  # create | update | rollback | auto_rollback
    # The configuration a rollback restored.
    restored_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # None for the platform's own changes (auto-rollback).
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
