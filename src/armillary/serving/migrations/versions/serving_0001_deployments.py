"""serving deployments, configuration versions, API keys and grants

Revision ID: serving_0001
Revises:
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "serving_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("serving",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "serving_deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("project_slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_deployments")),
    )
    op.create_index(
        op.f("ix_serving_deployments_project_id"),
        "serving_deployments",
        ["project_id"],
        unique=False,
    )
    op.create_index(
        "ix_serving_deployments_slug_name",
        "serving_deployments",
        ["project_slug", "name"],
        unique=False,
    )
    op.create_index(
        "uq_serving_deployments_live_name",
        "serving_deployments",
        ["project_id", "name"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "serving_deployment_configs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("routing", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("restored_version", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["serving_deployments.id"],
            name=op.f("fk_serving_deployment_configs_deployment_id_serving_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_deployment_configs")),
    )
    op.create_index(
        "uq_serving_deployment_configs_version",
        "serving_deployment_configs",
        ["deployment_id", "version"],
        unique=True,
    )
    op.create_table(
        "serving_api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["serving_deployments.id"],
            name=op.f("fk_serving_api_keys_deployment_id_serving_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_api_keys")),
    )
    op.create_index("uq_serving_api_keys_hash", "serving_api_keys", ["key_hash"], unique=True)
    op.create_index(
        "ix_serving_api_keys_deployment",
        "serving_api_keys",
        ["deployment_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "serving_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("granted_by", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["serving_deployments.id"],
            name=op.f("fk_serving_grants_deployment_id_serving_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_grants")),
    )
    op.create_index(
        "uq_serving_grants_user", "serving_grants", ["deployment_id", "user_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_serving_grants_user", table_name="serving_grants")
    op.drop_table("serving_grants")
    op.drop_index("ix_serving_api_keys_deployment", table_name="serving_api_keys")
    op.drop_index("uq_serving_api_keys_hash", table_name="serving_api_keys")
    op.drop_table("serving_api_keys")
    op.drop_index("uq_serving_deployment_configs_version", table_name="serving_deployment_configs")
    op.drop_table("serving_deployment_configs")
    op.drop_index(
        "uq_serving_deployments_live_name",
        table_name="serving_deployments",
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index("ix_serving_deployments_slug_name", table_name="serving_deployments")
    op.drop_index(op.f("ix_serving_deployments_project_id"), table_name="serving_deployments")
    op.drop_table("serving_deployments")
