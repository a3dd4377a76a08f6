"""tracking: artifact locations in the proxy's namespace, as `mlflow server --serve-artifacts`
writes them (mlflow-artifacts:/<experiment>[/<run>/artifacts]), without the project's slug
that the first slice put in front; the tracking URI names the project.

Revision ID: tracking_0002
Revises: tracking_0001
Create Date: 2026-12-07 10:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "tracking_0002"
down_revision: str | None = "tracking_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCHEME = "mlflow-artifacts:/"
# (table, column, parts after the scheme in the first slice's form: slug first)
_COLUMNS = (
    ("tracking_experiments", "artifact_location", 2),
    ("tracking_runs", "artifact_uri", 4),
)


def upgrade() -> None:
    bind = op.get_bind()
    for table, column, parts in _COLUMNS:
        rows = bind.execute(
            sa.text(f"SELECT id, {column} FROM {table} WHERE {column} LIKE :scheme"),  # noqa: S608
            {"scheme": _SCHEME + "%"},
        ).all()
        for row_id, value in rows:
            segments = value.removeprefix(_SCHEME).split("/")
            if len(segments) != parts:
                continue  # already in the proxy's form
            bind.execute(
                sa.text(f"UPDATE {table} SET {column} = :value WHERE id = :id"),  # noqa: S608
                {"value": _SCHEME + "/".join(segments[1:]), "id": row_id},
            )


def downgrade() -> None:
    # The slug is not recoverable here without the identity service's projects: the new form
    # stays (the first slice never read it back).
    pass
