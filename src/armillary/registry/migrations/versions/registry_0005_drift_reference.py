"""a model version's drift reference: its training rows' quantile bins and top categories per
feature (ADR 0032), stored at registration

Revision ID: registry_0005
Revises: registry_0004
Create Date: 2026-12-07 06:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "registry_0005"
down_revision: str | None = "registry_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registry_model_versions") as batch:
        batch.add_column(sa.Column("drift_reference", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registry_model_versions") as batch:
        batch.drop_column("drift_reference")
