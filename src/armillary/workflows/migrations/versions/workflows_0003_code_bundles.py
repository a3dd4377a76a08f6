"""code bundles

Revision ID: workflows_0003
Revises: workflows_0002
Create Date: 2026-11-27 12:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "workflows_0003"
down_revision: str | None = "workflows_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflows_code_bundles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows_code_bundles")),
    )
    with op.batch_alter_table("workflows_code_bundles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workflows_code_bundles_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            "uq_workflows_code_bundles_version",
            ["project_id", "name", "version"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("workflows_code_bundles", schema=None) as batch_op:
        batch_op.drop_index("uq_workflows_code_bundles_version")
        batch_op.drop_index(batch_op.f("ix_workflows_code_bundles_project_id"))

    op.drop_table("workflows_code_bundles")
