from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class Workflow(Base):
    __tablename__ = "workflows_workflows"
    __table_args__ = (
        # Names are unique among live workflows of a project; a deleted name can be reused.
        Index(
            "uq_workflows_workflows_live_name",
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
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    # The latest version's schedule, copied here for the scheduler's queries.
    schedule_cron: Mapped[str | None] = mapped_column(String(255), nullable=True)
    schedule_catchup: Mapped[str | None] = mapped_column(String(16), nullable=True)
    schedule_max_catchup_runs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The last cron time the scheduler handled (fired or skipped); runs after it are due.
    schedule_last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Allocates version numbers under a row lock.
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)


class WorkflowVersion(Base):
    """An immutable spec; a job records the version it ran."""

    __tablename__ = "workflows_versions"
    __table_args__ = (Index("uq_workflows_versions_number", "workflow_id", "number", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    workflow_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflows_workflows.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    # SHA-256 of the canonical JSON (sorted keys, defaults filled in): equal specs, equal hash.
    spec_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
