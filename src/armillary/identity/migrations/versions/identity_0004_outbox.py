"""identity's own outbox (ADR 0026: each service's schema holds its outbox and processed events)

Revision ID: identity_0004
Revises: identity_0003
Create Date: 2026-12-07 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from armillary.kit.migrations.outbox import create_outbox_tables, drop_outbox_tables

revision: str = "identity_0004"
down_revision: str | None = "identity_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_tables()


def downgrade() -> None:
    drop_outbox_tables()
