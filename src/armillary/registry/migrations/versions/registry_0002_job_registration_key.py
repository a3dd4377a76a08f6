"""a job registering the same artifacts again gets the same version

Revision ID: registry_0002
Revises: registry_0001
Create Date: 2026-12-06 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "registry_0002"
down_revision: str | None = "registry_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registry_model_versions") as batch:
        batch.add_column(sa.Column("job_registration_key", sa.String(64), nullable=True))
        batch.create_index(
            "uq_registry_model_versions_job_registration",
            ["model_id", "job_registration_key"],
            unique=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("registry_model_versions") as batch:
        batch.drop_index("uq_registry_model_versions_job_registration")
        batch.drop_column("job_registration_key")
