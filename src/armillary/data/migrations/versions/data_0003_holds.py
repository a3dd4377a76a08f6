"""dataset holds: model versions keep the dataset versions they were trained on

Revision ID: data_0003
Revises: data_0002
Create Date: 2026-12-10 10:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "data_0003"
down_revision: str | None = "data_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "data_dataset_holds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("model_version_id", sa.Uuid(), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["data_datasets.id"],
            name=op.f("fk_data_dataset_holds_dataset_id_data_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["data_dataset_versions.id"],
            name=op.f("fk_data_dataset_holds_version_id_data_dataset_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_dataset_holds")),
    )
    with op.batch_alter_table("data_dataset_holds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_dataset_holds_dataset_id"), ["dataset_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_data_dataset_holds_model_version_id"),
            ["model_version_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_data_dataset_holds_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            "uq_data_dataset_holds_version_model",
            ["version_id", "model_version_id"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("data_dataset_holds", schema=None) as batch_op:
        batch_op.drop_index("uq_data_dataset_holds_version_model")
        batch_op.drop_index(batch_op.f("ix_data_dataset_holds_project_id"))
        batch_op.drop_index(batch_op.f("ix_data_dataset_holds_model_version_id"))
        batch_op.drop_index(batch_op.f("ix_data_dataset_holds_dataset_id"))

    op.drop_table("data_dataset_holds")
