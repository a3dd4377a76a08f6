"""execution: resolved params, retry/timeout/cache settings per task run, leases' row version,
artifacts, and the schedule's last fired time

Revision ID: workflows_0004
Revises: workflows_0003
Create Date: 2026-11-27 12:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "workflows_0004"
down_revision: str | None = "workflows_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflows_task_runs") as batch:
        batch.add_column(
            sa.Column("lost_attempts", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("resolved_params", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("declared_outputs", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch.add_column(sa.Column("timeout_seconds", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("retry_backoff_seconds", sa.Float(), server_default="10", nullable=False)
        )
        batch.add_column(
            sa.Column("cache", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("cache_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("cached_from", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("artifacts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("row_version", sa.Integer(), server_default="1", nullable=False))
        batch.create_index("ix_workflows_task_runs_cache_key", ["cache_key"])
    with op.batch_alter_table("workflows_workflows") as batch:
        batch.add_column(
            sa.Column("schedule_last_fired_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("workflows_workflows") as batch:
        batch.drop_column("schedule_last_fired_at")
    with op.batch_alter_table("workflows_task_runs") as batch:
        batch.drop_index("ix_workflows_task_runs_cache_key")
        for column in (
            "row_version",
            "artifacts",
            "cached_from",
            "cache_key",
            "cache",
            "retry_backoff_seconds",
            "timeout_seconds",
            "declared_outputs",
            "resolved_params",
            "lost_attempts",
        ):
            batch.drop_column(column)
