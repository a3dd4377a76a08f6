"""serving prediction log and feedback

Revision ID: serving_0002
Revises: serving_0001
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "serving_0002"
down_revision: str | None = "serving_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "serving_predictions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("shadow", sa.Boolean(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("error", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_predictions")),
    )
    op.create_index(
        "ix_serving_predictions_lookup",
        "serving_predictions",
        ["deployment_id", "variant", "model_version"],
        unique=False,
    )
    op.create_index(
        "ix_serving_predictions_parent_id", "serving_predictions", ["parent_id"], unique=False
    )
    op.create_table(
        "serving_feedback",
        sa.Column("prediction_id", sa.Uuid(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("actual", sa.JSON(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("squared_error", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["serving_predictions.id"],
            name=op.f("fk_serving_feedback_prediction_id_serving_predictions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("prediction_id", "row", name=op.f("pk_serving_feedback")),
    )
    op.create_index(
        "ix_serving_feedback_deployment",
        "serving_feedback",
        ["deployment_id", "variant"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_serving_feedback_deployment", table_name="serving_feedback")
    op.drop_table("serving_feedback")
    op.drop_index("ix_serving_predictions_parent_id", table_name="serving_predictions")
    op.drop_index("ix_serving_predictions_lookup", table_name="serving_predictions")
    op.drop_table("serving_predictions")
