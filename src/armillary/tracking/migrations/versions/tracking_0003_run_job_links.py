"""tracking: the job and task a run was started by (from the job token's claims), so a run's
lineage reaches what its job read and wrote

Revision ID: tracking_0003
Revises: tracking_0002
Create Date: 2026-12-07 13:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tracking_0003"
down_revision: str | None = "tracking_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tracking_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("task", sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f("ix_tracking_runs_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tracking_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_runs_job_id"))
        batch_op.drop_column("task")
        batch_op.drop_column("job_id")
