"""task runs keep the report a task made about its data (quality gates)

Revision ID: workflows_0006
Revises: workflows_0005
Create Date: 2026-11-27 12:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "workflows_0006"
down_revision: str | None = "workflows_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflows_task_runs") as batch:
        batch.add_column(sa.Column("report", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflows_task_runs") as batch:
        batch.drop_column("report")
