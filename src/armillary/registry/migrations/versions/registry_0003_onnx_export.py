"""a model version's ONNX export runs after its training job: its state, reason and job

Revision ID: registry_0003
Revises: registry_0002
Create Date: 2026-12-06 17:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "registry_0003"
down_revision: str | None = "registry_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("registry_model_versions") as batch:
        batch.add_column(sa.Column("onnx_status", sa.String(8), nullable=True))
        batch.add_column(sa.Column("onnx_reason", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("onnx_job_id", sa.Uuid(), nullable=True))
        batch.create_index("ix_registry_model_versions_onnx_job_id", ["onnx_job_id"])
    # Versions that already carry model.onnx were exported and checked at training time.
    op.execute(
        "UPDATE registry_model_versions SET onnx_status = 'ready' "
        "WHERE artifacts LIKE '%\"model.onnx\"%'"
        if op.get_bind().dialect.name == "sqlite"
        else "UPDATE registry_model_versions SET onnx_status = 'ready' "
        "WHERE (artifacts::jsonb) -> 'model.onnx' IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("registry_model_versions") as batch:
        batch.drop_index("ix_registry_model_versions_onnx_job_id")
        batch.drop_column("onnx_job_id")
        batch.drop_column("onnx_reason")
        batch.drop_column("onnx_status")
