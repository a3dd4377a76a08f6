"""task attempts keep the progress their task last reported

Revision ID: workflows_0007
Revises: workflows_0006
Create Date: 2026-12-10 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "workflows_0007"
down_revision: str | None = "workflows_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # On the attempt, not the task run: the run's row_version belongs to the executor.
    with op.batch_alter_table("workflows_task_attempts") as batch:
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflows_task_attempts") as batch:
        batch.drop_column("progress_at")
        batch.drop_column("progress")
