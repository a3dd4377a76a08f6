"""Tables of the prediction log and of the ground truth sent back as feedback."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, utcnow


class PredictionRecord(Base):
    """One answered (or failed) request of one variant; a shadow's copy is its own row that
    names the answered request as ``parent_id``."""

    __tablename__ = "serving_predictions"
    __table_args__ = (
        Index("ix_serving_predictions_lookup", "deployment_id", "variant", "model_version"),
        Index("ix_serving_predictions_parent_id", "parent_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    deployment_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    config_version: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[int] = mapped_column(Integer)
    shadow: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    # SHA-256 of the routing key: which requests were sticky, without keeping the key.
    key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rows: Mapped[int] = mapped_column(Integer)
    outputs: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeedbackRecord(Base):
    """The ground truth of one row of one logged prediction, scored when it arrived."""

    __tablename__ = "serving_feedback"
    __table_args__ = (Index("ix_serving_feedback_deployment", "deployment_id", "variant"),)

    prediction_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("serving_predictions.id", ondelete="CASCADE"), primary_key=True
    )
    row: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    variant: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[int] = mapped_column(Integer)
    actual: Mapped[Any] = mapped_column(JSON)
    # Classification: whether the prediction was right; regression: its squared error.
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    squared_error: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
