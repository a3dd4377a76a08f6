"""Jobs, task runs and task attempts.

``status`` columns are written only by :mod:`armillary.workflows.jobs.transitions`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"


class Trigger(StrEnum):
    API = "api"
    CLI = "cli"
    SCHEDULE = "schedule"
    # Started by the platform after a training job: a model version's ONNX export (ADR 0018).
    ONNX_EXPORT = "onnx_export"


class Job(Base):
    __tablename__ = "workflows_jobs"
    __table_args__ = (
        # One job per idempotency key and workflow; jobs without a key are not constrained.
        Index(
            "uq_workflows_jobs_idempotency",
            "workflow_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_workflows_jobs_project_created", "project_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The identity service's project id; no foreign key across service boundaries.
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    workflow_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflows_workflows.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflows_versions.id", ondelete="CASCADE")
    )
    version_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The W3C traceparent of the submission (ADR 0031): the scheduler's and the workers'
    # spans of this job are its children. None when tracing was off.
    traceparent: Mapped[str | None] = mapped_column(String(55), nullable=True)

    task_runs: Mapped[list[TaskRun]] = relationship(
        back_populates="job", order_by="TaskRun.position", lazy="raise"
    )


class TaskRun(Base):
    __tablename__ = "workflows_task_runs"
    __table_args__ = (Index("uq_workflows_task_runs_name", "job_id", "name", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    job_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflows_jobs.id", ondelete="CASCADE"), index=True
    )
    # The task's place in the spec, so a job shows its tasks in the order they were written.
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=TaskState.PENDING, index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    # Attempts lost with their worker (lease expired); they do not use up the retries.
    lost_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    needs: Mapped[list[str]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The params with references replaced, fixed when the task is queued.
    resolved_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    declared_outputs: Mapped[list[str]] = mapped_column(JSON, default=list)
    timeout_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    retry_backoff_seconds: Mapped[float] = mapped_column(Float, default=10.0, server_default="10")
    cache: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # "sandbox", or "in_process" for a trusted built-in type the spec opted in (ADR 0047).
    isolation: Mapped[str] = mapped_column(String(16), default="sandbox", server_default="sandbox")
    # SHA-256 of type, resolved params and input hashes: equal keys may reuse outputs.
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    cached_from: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # A report the task made about its data (a quality gate's checks), kept when it failed too.
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Object keys of the files the task wrote as artifacts, by name.
    artifacts: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # For the executor: who holds the task, until when, and the token its result must carry.
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    fencing_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Optimistic concurrency: two writers that read the same row cannot both update it
    # (SQLite has no SELECT ... FOR UPDATE SKIP LOCKED).
    row_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    job: Mapped[Job] = relationship(back_populates="task_runs", lazy="raise")
    attempts: Mapped[list[TaskAttempt]] = relationship(
        order_by="TaskAttempt.number", lazy="raise", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": row_version}


class TaskAttempt(Base):
    """One try of a task run, as the executor records it."""

    __tablename__ = "workflows_task_attempts"
    __table_args__ = (
        Index("uq_workflows_task_attempts_number", "task_run_id", "number", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    task_run_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflows_task_runs.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    fencing_token: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the task last reported about how far it got (stage, counts, message, metrics).
    # Kept here, not on the task run, so reports never move the run's row_version.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
