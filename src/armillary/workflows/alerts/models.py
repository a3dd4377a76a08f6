"""Alert channels (where to notify), rules (when) and deliveries (each message, outbox style).

Secrets of a channel are kept encrypted in ``secrets_ciphertext`` (see
:mod:`armillary.kit.secretbox`), bound to the channel's id; ``secret_hints`` holds only masked
hints (``"…abcd"``) for display.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, new_id, utcnow


class ChannelKind(StrEnum):
    EMAIL = "email"
    SLACK = "slack"
    PAGERDUTY = "pagerduty"
    WEBHOOK = "webhook"


class RuleKind(StrEnum):
    JOB_FAILED = "job_failed"
    QUALITY_GATE_FAILED = "quality_gate_failed"
    TASK_DURATION_P95 = "task_duration_p95"
    JOB_DEADLINE = "job_deadline"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


#: The event of a delivery made by ``POST .../channels/{id}/test``.
TEST_EVENT = "test"


class AlertChannel(Base):
    __tablename__ = "workflows_alert_channels"
    __table_args__ = (Index("uq_workflows_alert_channels_name", "project_id", "name", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    # The identity service's project id; no foreign key across service boundaries.
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    project_slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The settings that are not secret (SMTP host, recipients, PagerDuty URL...).
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The secret settings as one JSON object, encrypted (never returned, never logged).
    secrets_ciphertext: Mapped[str] = mapped_column(Text)
    # A masked hint per secret, or {"secret_ref": ...} for one given by reference.
    secret_hints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AlertRule(Base):
    __tablename__ = "workflows_alert_rules"
    __table_args__ = (Index("ix_workflows_alert_rules_project_kind", "project_id", "kind"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    project_slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Filters: only jobs of this workflow (by name), only this task (duration rules).
    workflow: Mapped[str | None] = mapped_column(String(64), nullable=True)
    task: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # task_duration_p95: alert above p95 x factor, once min_samples earlier runs exist.
    factor: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # job_deadline: alert when a job has not succeeded this long after it was created.
    max_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertDelivery(Base):
    """One message to one channel. Written in the transaction that decided to alert and sent
    after commit by the delivery loop; ``dedup_key`` makes a second decision a no-op."""

    __tablename__ = "workflows_alert_deliveries"
    __table_args__ = (
        Index("ix_workflows_alert_deliveries_due", "status", "next_attempt_at"),
        Index("ix_workflows_alert_deliveries_channel", "channel_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    project_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    channel_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflows_alert_channels.id", ondelete="CASCADE")
    )
    # No foreign key: the history stays when a rule is deleted.
    rule_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    rule_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    event: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    task_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    # The alert as the senders render it (no secrets in it).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Claimed by one delivery loop until then (several processes may run one).
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
