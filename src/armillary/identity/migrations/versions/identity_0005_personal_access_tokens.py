"""personal access tokens (ADR 0040)

Revision ID: identity_0005
Revises: identity_0004
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "identity_0005"
down_revision: str | None = "identity_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "identity_personal_access_tokens"


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("jti_hash", sa.String(length=64), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f(f"fk_{_TABLE}_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{_TABLE}")),
        sa.UniqueConstraint("jti_hash", name=op.f(f"uq_{_TABLE}_jti_hash")),
    )
    op.create_index(op.f(f"ix_{_TABLE}_user_id"), _TABLE, ["user_id"], unique=False)
    op.create_index(op.f(f"ix_{_TABLE}_kid"), _TABLE, ["kid"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f(f"ix_{_TABLE}_kid"), table_name=_TABLE)
    op.drop_index(op.f(f"ix_{_TABLE}_user_id"), table_name=_TABLE)
    op.drop_table(_TABLE)
