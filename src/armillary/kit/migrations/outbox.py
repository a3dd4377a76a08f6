"""The outbox tables every service keeps in its own schema (ADR 0026), for the services'
migrations to create. SQLite keeps one file, so there the first service to migrate makes
the one shared pair and the others find it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def create_outbox_tables() -> None:
    if sa.inspect(op.get_bind()).has_table("outbox_events"):
        return
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=120), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_events_published_at"), ["published_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_outbox_events_type"), ["type"], unique=False)
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.String(length=120), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_processed_events")),
    )


def drop_outbox_tables() -> None:
    """Downgrade: on SQLite the pair is shared, so it stays for the other services."""
    if op.get_bind().dialect.name == "sqlite":
        return
    op.drop_table("processed_events")
    op.drop_table("outbox_events")
