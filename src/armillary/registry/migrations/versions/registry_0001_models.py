"""registry models, versions, dataset links, aliases and alias moves

Revision ID: registry_0001
Revises:
Create Date: 2026-11-27 14:35:28.098301
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "registry_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("registry",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_models",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("alias_policies", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version_counter", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_models")),
    )
    op.create_index(
        op.f("ix_registry_models_project_id"), "registry_models", ["project_id"], unique=False
    )
    op.create_index(
        "uq_registry_models_live_name",
        "registry_models",
        ["project_id", "name"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "registry_alias_moves",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registry_models.id"],
            name=op.f("fk_registry_alias_moves_model_id_registry_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_registry_alias_moves")),
    )
    op.create_index(
        "ix_registry_alias_moves_lookup",
        "registry_alias_moves",
        ["model_id", "alias", "at"],
        unique=False,
    )
    op.create_table(
        "registry_model_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("estimator", sa.String(length=128), nullable=True),
        sa.Column("problem", sa.String(length=32), nullable=True),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("artifacts", sa.JSON(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registry_models.id"],
            name=op.f("fk_registry_model_versions_model_id_registry_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_model_versions")),
    )
    op.create_index(
        op.f("ix_registry_model_versions_model_id"),
        "registry_model_versions",
        ["model_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_registry_model_versions_project_id"),
        "registry_model_versions",
        ["project_id"],
        unique=False,
    )
    op.create_index(
        "uq_registry_model_versions_number",
        "registry_model_versions",
        ["model_id", "number"],
        unique=True,
    )
    op.create_table(
        "registry_aliases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("model_version_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registry_models.id"],
            name=op.f("fk_registry_aliases_model_id_registry_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["registry_model_versions.id"],
            name=op.f("fk_registry_aliases_model_version_id_registry_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_aliases")),
    )
    op.create_index(
        op.f("ix_registry_aliases_model_id"), "registry_aliases", ["model_id"], unique=False
    )
    op.create_index(
        "uq_registry_aliases_name", "registry_aliases", ["model_id", "name"], unique=True
    )
    op.create_table(
        "registry_version_datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_version_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("dataset_name", sa.String(length=128), nullable=False),
        sa.Column("dataset_version", sa.Integer(), nullable=False),
        sa.Column("dataset_version_id", sa.Uuid(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["registry_model_versions.id"],
            name=op.f("fk_registry_version_datasets_model_version_id_registry_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_version_datasets")),
    )
    op.create_index(
        "ix_registry_version_datasets_lookup",
        "registry_version_datasets",
        ["project_id", "dataset_id", "dataset_version"],
        unique=False,
    )
    op.create_index(
        op.f("ix_registry_version_datasets_model_version_id"),
        "registry_version_datasets",
        ["model_version_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_registry_version_datasets_model_version_id"),
        table_name="registry_version_datasets",
    )
    op.drop_index("ix_registry_version_datasets_lookup", table_name="registry_version_datasets")
    op.drop_table("registry_version_datasets")
    op.drop_index("uq_registry_aliases_name", table_name="registry_aliases")
    op.drop_index(op.f("ix_registry_aliases_model_id"), table_name="registry_aliases")
    op.drop_table("registry_aliases")
    op.drop_index("uq_registry_model_versions_number", table_name="registry_model_versions")
    op.drop_index(
        op.f("ix_registry_model_versions_project_id"), table_name="registry_model_versions"
    )
    op.drop_index(op.f("ix_registry_model_versions_model_id"), table_name="registry_model_versions")
    op.drop_table("registry_model_versions")
    op.drop_index("ix_registry_alias_moves_lookup", table_name="registry_alias_moves")
    op.drop_table("registry_alias_moves")
    op.drop_index(
        "uq_registry_models_live_name",
        table_name="registry_models",
        postgresql_where=sa.text("deleted_at IS NULL"),
        sqlite_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(op.f("ix_registry_models_project_id"), table_name="registry_models")
    op.drop_table("registry_models")
