"""signing key activation instant (two-phase rotation, ADR 0023)

Revision ID: identity_0003
Revises: identity_0002
Create Date: 2026-12-06 20:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "identity_0003"
down_revision: str | None = "identity_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: existing keys signed from their created_at, which the key ring falls back to.
    with op.batch_alter_table("identity_signing_keys") as batch:
        batch.add_column(sa.Column("activates_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("identity_signing_keys") as batch:
        batch.drop_column("activates_at")
