"""alerts: notification channels, rules and deliveries

Revision ID: workflows_0005
Revises: workflows_0004
Create Date: 2026-11-28 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "workflows_0005"
down_revision: str | None = "workflows_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflows_alert_channels",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("project_slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets_ciphertext", sa.Text(), nullable=False),
        sa.Column("secret_hints", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows_alert_channels")),
    )
    with op.batch_alter_table("workflows_alert_channels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workflows_alert_channels_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            "uq_workflows_alert_channels_name", ["project_id", "name"], unique=True
        )

    op.create_table(
        "workflows_alert_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("project_slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=True),
        sa.Column("task", sa.String(length=64), nullable=True),
        sa.Column("factor", sa.Float(), nullable=True),
        sa.Column("min_samples", sa.Integer(), nullable=True),
        sa.Column("max_minutes", sa.Integer(), nullable=True),
        sa.Column("channel_ids", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows_alert_rules")),
    )
    with op.batch_alter_table("workflows_alert_rules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_workflows_alert_rules_project_kind", ["project_id", "kind"], unique=False
        )

    op.create_table(
        "workflows_alert_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=True),
        sa.Column("rule_name", sa.String(length=100), nullable=True),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("task_run_id", sa.Uuid(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["workflows_alert_channels.id"],
            name=op.f("fk_workflows_alert_deliveries_channel_id_workflows_alert_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows_alert_deliveries")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_workflows_alert_deliveries_dedup_key")),
    )
    with op.batch_alter_table("workflows_alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_workflows_alert_deliveries_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_workflows_alert_deliveries_channel", ["channel_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workflows_alert_deliveries_job_id"), ["job_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("workflows_alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflows_alert_deliveries_job_id"))
        batch_op.drop_index("ix_workflows_alert_deliveries_channel")
        batch_op.drop_index("ix_workflows_alert_deliveries_due")
    op.drop_table("workflows_alert_deliveries")
    with op.batch_alter_table("workflows_alert_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_workflows_alert_rules_project_kind")
    op.drop_table("workflows_alert_rules")
    with op.batch_alter_table("workflows_alert_channels", schema=None) as batch_op:
        batch_op.drop_index("uq_workflows_alert_channels_name")
        batch_op.drop_index(batch_op.f("ix_workflows_alert_channels_project_id"))
    op.drop_table("workflows_alert_channels")
