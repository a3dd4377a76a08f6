"""jobs keep the trace context of their submission (ADR 0031)

Revision ID: workflows_0009
Revises: workflows_0008
Create Date: 2026-12-07 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "workflows_0009"
down_revision: str | None = "workflows_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflows_jobs") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflows_jobs") as batch:
        batch.drop_column("traceparent")
