"""Alembic environment: async engines, SQLite batch mode, every service's metadata."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from armillary.migrations.metadata import target_metadata

config = context.config


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Autogenerate for one service at a time: ``-x tables=identity_`` picks its tables."""
    prefixes = context.get_x_argument(as_dictionary=True).get("tables")
    if not prefixes or type_ != "table" or name is None:
        return True
    return name.startswith(tuple(prefixes.split(",")))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # `armillary db upgrade` reports which revisions it applied (runner.upgrade).
        on_version_apply=config.attributes.get("on_version_apply"),
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
