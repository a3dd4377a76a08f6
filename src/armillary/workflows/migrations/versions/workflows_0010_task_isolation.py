"""task runs say whether they run in a sandbox or in the worker's process (ADR 0047)

Revision ID: workflows_0010
Revises: workflows_0009
Create Date: 2026-12-08 00:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "workflows_0010"
down_revision: str | None = "workflows_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflows_task_runs") as batch:
        batch.add_column(
            sa.Column("isolation", sa.String(length=16), server_default="sandbox", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("workflows_task_runs") as batch:
        batch.drop_column("isolation")
