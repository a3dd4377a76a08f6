"""Runs, their parameters, tags and metric points, and each metric's latest value."""

from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, new_id

# SQLite gives a rowid only to INTEGER PRIMARY KEY; PostgreSQL needs 64 bits for the points.
SEQUENCE = BigInteger().with_variant(Integer(), "sqlite")


class Run(Base):
    __tablename__ = "tracking_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    experiment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tracking_experiments.id", ondelete="CASCADE"), index=True
    )
    # Denormalized from the experiment so every lookup by id is filtered by project.
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    name: Mapped[str] = mapped_column(String(250), default="")
    # What the client says (MLflow's user_id); who really created it is created_by.
    user_id: Mapped[str] = mapped_column(String(256), default="")
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")
    deleted_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # From the `mlflow.parentRunId` tag: nested runs (a study and its trials).
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    artifact_uri: Mapped[str] = mapped_column(String(1000))
    # The job and task whose token created the run (its claims, never the client's tags).
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    task: Mapped[str | None] = mapped_column(String(128), nullable=True)


class RunParam(Base):
    __tablename__ = "tracking_params"

    run_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunTag(Base):
    __tablename__ = "tracking_tags"

    run_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class MetricPoint(Base):
    """One logged value. ``seq`` orders the history as it was logged (and pages it)."""

    __tablename__ = "tracking_metrics"
    __table_args__ = (Index("ix_tracking_metrics_run_key_seq", "run_id", "key", "seq"),)

    seq: Mapped[int] = mapped_column(SEQUENCE, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tracking_runs.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(250))
    # NaN apart: SQLite stores a NaN REAL as NULL, so the flag keeps it.
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(BigInteger, default=0)


class LatestMetric(Base):
    """Each metric's latest point by MLflow's rule: the greatest (step, timestamp, value)."""

    __tablename__ = "tracking_latest_metrics"

    run_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(BigInteger)
