"""tracking: experiments, runs, params, tags, metric points, latest metrics, and its outbox

Revision ID: tracking_0001
Revises:
Create Date: 2026-12-07 09:28:37.885248
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from armillary.kit.migrations.outbox import create_outbox_tables, drop_outbox_tables

revision: str = "tracking_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("tracking",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_tables()
    op.create_table(
        "tracking_experiments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("artifact_location", sa.String(length=1000), nullable=False),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_experiments")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_tracking_experiments_project_id")),
    )
    with op.batch_alter_table("tracking_experiments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tracking_experiments_project_id"), ["project_id"], unique=False
        )

    op.create_table(
        "tracking_experiment_tags",
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["tracking_experiments.id"],
            name=op.f("fk_tracking_experiment_tags_experiment_id_tracking_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "key", name=op.f("pk_tracking_experiment_tags")),
    )
    op.create_table(
        "tracking_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("deleted_time", sa.BigInteger(), nullable=True),
        sa.Column("parent_run_id", sa.Uuid(), nullable=True),
        sa.Column("artifact_uri", sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["tracking_experiments.id"],
            name=op.f("fk_tracking_runs_experiment_id_tracking_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_runs")),
    )
    with op.batch_alter_table("tracking_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tracking_runs_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tracking_runs_parent_run_id"), ["parent_run_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tracking_runs_project_id"), ["project_id"], unique=False
        )

    op.create_table(
        "tracking_latest_metrics",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["tracking_runs.id"],
            name=op.f("fk_tracking_latest_metrics_run_id_tracking_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_tracking_latest_metrics")),
    )
    op.create_table(
        "tracking_metrics",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["tracking_runs.id"],
            name=op.f("fk_tracking_metrics_run_id_tracking_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_tracking_metrics")),
    )
    with op.batch_alter_table("tracking_metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tracking_metrics_run_key_seq", ["run_id", "key", "seq"], unique=False
        )

    op.create_table(
        "tracking_params",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["tracking_runs.id"],
            name=op.f("fk_tracking_params_run_id_tracking_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_tracking_params")),
    )
    op.create_table(
        "tracking_tags",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["tracking_runs.id"],
            name=op.f("fk_tracking_tags_run_id_tracking_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "key", name=op.f("pk_tracking_tags")),
    )


def downgrade() -> None:
    op.drop_table("tracking_tags")
    op.drop_table("tracking_params")
    with op.batch_alter_table("tracking_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_tracking_metrics_run_key_seq")

    op.drop_table("tracking_metrics")
    op.drop_table("tracking_latest_metrics")
    with op.batch_alter_table("tracking_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_runs_project_id"))
        batch_op.drop_index(batch_op.f("ix_tracking_runs_parent_run_id"))
        batch_op.drop_index(batch_op.f("ix_tracking_runs_experiment_id"))

    op.drop_table("tracking_runs")
    op.drop_table("tracking_experiment_tags")
    with op.batch_alter_table("tracking_experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_experiments_project_id"))

    op.drop_table("tracking_experiments")
    drop_outbox_tables()
