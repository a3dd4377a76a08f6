"""The database layout around the services' migrations (ADR 0026).

On PostgreSQL every service owns schema ``<service>``. Before the services migrate, a
whole-database upgrade makes the schemas, moves a database of the old layout (every table
in ``public``, one ``alembic_version`` for all branches) into them, and sets this user's
default search path to every service's schema, so an administrator's session (psql, a
restore, a transaction pooler that passes no start-up options) finds every table.

SQLite keeps one file: there only the old shared version table is split.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from armillary.kit.db import SERVICE_SCHEMAS, search_path

# The old layout's shared tables: the embedded shape's one outbox is identity's now, first
# on the search path.
_SHARED_TABLES = {"outbox_events": "identity", "processed_events": "identity"}


def owner_of_table(name: str) -> str | None:
    """The service a table belongs to: its name's prefix (``data_datasets`` → data)."""
    if name in _SHARED_TABLES:
        return _SHARED_TABLES[name]
    prefix = name.split("_", 1)[0]
    return prefix if prefix in SERVICE_SCHEMAS else None


def version_table(service: str, *, sqlite: bool) -> tuple[str, str | None]:
    """Where ``service``'s Alembic version lives: (table, schema)."""
    if sqlite:
        return f"alembic_version_{service}", None
    return "alembic_version", service


async def prepare(dsn: str, connect_args: dict[str, Any]) -> None:
    engine = create_async_engine(dsn, poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_prepare)
    finally:
        await engine.dispose()


def _prepare(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        _split_versions(connection, sqlite=True)
        return
    for schema in SERVICE_SCHEMAS:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    legacy = connection.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
    ).scalars()
    for table in list(legacy):
        owner = owner_of_table(table)
        if owner is not None:
            connection.execute(text(f'ALTER TABLE public."{table}" SET SCHEMA "{owner}"'))
    _split_versions(connection, sqlite=False)
    # Sessions without start-up options (psql, pg_restore, a transaction pooler) still find
    # every service's tables: this user's default in this database.
    connection.execute(
        text(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE CURRENT_USER IN DATABASE %I SET "
            f"search_path = {search_path(SERVICE_SCHEMAS)}', current_database()); END $$"
        )
    )


def _split_versions(connection: Connection, *, sqlite: bool) -> None:
    """The old shared ``alembic_version`` (one row per branch head) becomes one version
    table per service, holding that service's head; kit's own branch (the outbox) is gone,
    since each service now makes its own outbox."""
    old = "alembic_version" if sqlite else "public.alembic_version"
    exists = connection.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'")
        if sqlite
        else text("SELECT to_regclass('public.alembic_version')")
    ).scalar()
    if exists is None:
        return
    # Every name formatted into SQL here is one of SERVICE_SCHEMAS' or a constant.
    heads = connection.execute(text(f"SELECT version_num FROM {old}")).scalars().all()  # noqa: S608
    for head in heads:
        service = head.split("_", 1)[0]
        if service not in SERVICE_SCHEMAS:
            continue
        table, schema = version_table(service, sqlite=sqlite)
        qualified = table if schema is None else f'"{schema}".{table}'
        connection.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {qualified} (version_num VARCHAR(32) NOT NULL, "
                f"CONSTRAINT {table}_pkc PRIMARY KEY (version_num))"
            )
        )
        connection.execute(text(f"DELETE FROM {qualified}"))  # noqa: S608
        insert = f"INSERT INTO {qualified} (version_num) VALUES (:v)"  # noqa: S608
        connection.execute(text(insert), {"v": head})
    connection.execute(text(f"DROP TABLE {old}"))
