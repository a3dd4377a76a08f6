"""Model versions and the dataset versions each was trained or evaluated on."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class ModelVersion(Base):
    __tablename__ = "registry_model_versions"
    __table_args__ = (
        Index("uq_registry_model_versions_number", "model_id", "number", unique=True),
        Index(
            "uq_registry_model_versions_job_registration",
            "model_id",
            "job_registration_key",
            unique=True,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    model_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("registry_models.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    estimator: Mapped[str | None] = mapped_column(String(128), nullable=True)
    problem: Mapped[str | None] = mapped_column(String(32), nullable=True)
    format: Mapped[str] = mapped_column(String(8))
    # name -> {"key", "size_bytes", "sha256"}; keys never leave the service.
    artifacts: Mapped[dict[str, dict[str, Any]]] = mapped_column(JSON, default=dict)
    environment: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(8))  # "job" | "upload" | "mlflow"
    # Set for a version registered by a job (job_registrations): the same job, task and
    # artifacts register it once.
    job_registration_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The ONNX export (ADR 0018): None (not asked for), "pending", "ready" or "failed" (with
    # the reason); only job ``onnx_job_id``, which the registry asked for, may finish it.
    onnx_status: Mapped[str | None] = mapped_column(String(8), nullable=True)
    onnx_reason: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    onnx_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    # The training rows' distribution per feature (contracts.drift, ADR 0032), when known:
    # serving measures drift against it.
    drift_reference: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VersionDataset(Base):
    """One dataset version a model version used: answers "which models came from this data"."""

    __tablename__ = "registry_version_datasets"
    __table_args__ = (
        Index("ix_registry_version_datasets_lookup", "project_id", "dataset_id", "dataset_version"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    model_version_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("registry_model_versions.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    dataset_name: Mapped[str] = mapped_column(String(128))
    dataset_version: Mapped[int] = mapped_column(Integer)
    dataset_version_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # "training" | "evaluation"
