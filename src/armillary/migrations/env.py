"""Alembic environment of one service (``config.attributes["service"]``, set by the runner):
async engines, SQLite batch mode; on PostgreSQL the service's own schema, search path and
version table (ADR 0026)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from armillary.migrations.layout import owner_of_table, version_table
from armillary.migrations.metadata import target_metadata

config = context.config
service: str = config.attributes.get("service") or context.get_x_argument(as_dictionary=True).get(
    "service", ""
)


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Autogenerate sees this service's tables only."""
    if type_ != "table" or name is None:
        return True
    return owner_of_table(name) == service or name in ("outbox_events", "processed_events")


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    table, schema = version_table(service, sqlite=sqlite)
    if not sqlite:
        # The schema exists already where `armillary db roles` made it (owned by the
        # service's role, which may not create schemas); tables land in it, unqualified.
        exists = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": service}
        ).scalar()
        if exists is None:
            connection.execute(text(f'CREATE SCHEMA "{service}"'))
        connection.execute(text(f'SET search_path TO "{service}"'))
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        render_as_batch=sqlite,
        compare_type=True,
        # `armillary db upgrade` reports which revisions it applied (runner.upgrade).
        on_version_apply=config.attributes.get("on_version_apply"),
        version_table=table,
        version_table_schema=schema,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    # TLS to PostgreSQL, when configured, reaches the migrations too (runner.upgrade).
    engine = create_async_engine(
        config.get_main_option("sqlalchemy.url") or "",
        poolclass=NullPool,
        connect_args=config.attributes.get("connect_args", {}),
    )
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())
