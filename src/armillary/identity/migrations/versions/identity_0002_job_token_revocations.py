"""job token revocations

Revision ID: identity_0002
Revises: identity_0001
Create Date: 2026-12-06 14:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "identity_0002"
down_revision: str | None = "identity_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_job_token_revocations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("task", sa.String(length=64), nullable=True),
        sa.Column("through_attempt", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_job_token_revocations")),
    )
    op.create_index(
        op.f("ix_identity_job_token_revocations_job_id"),
        "identity_job_token_revocations",
        ["job_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_identity_job_token_revocations_job_id"),
        table_name="identity_job_token_revocations",
    )
    op.drop_table("identity_job_token_revocations")
