"""A PostgreSQL role per service (ADR 0026): ``armillary_<service>`` owns schema
``<service>`` and everything in it, and is granted nothing in any other schema, so a
service's credential reads and writes its own tables only. The scheduler and the workers
connect as ``armillary_workflows``.

Run with an administrator's DSN (a superuser, or a role with CREATEROLE that may act as
the roles it makes), after ``armillary db upgrade`` and again after each one that an
administrator ran: tables the administrator created pass to their service's role.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from armillary.kit.db import SERVICE_SCHEMAS, search_path
from armillary.kit.settings import Settings
from armillary.migrations.runner import connect_args

SERVICES = SERVICE_SCHEMAS


def role_name(service: str) -> str:
    return f"armillary_{service}"


def passwords_in(directory: Path) -> dict[str, str]:
    """Each role's password from ``directory/<service>`` (a Kubernetes secret volume, or
    the local launch's own directory); one missing is made (random, mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = {}
    for service in SERVICE_SCHEMAS:
        path = directory / service
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        found[service] = path.read_text().strip()
    return found


async def grant(settings: Settings, passwords: Mapping[str, str]) -> None:
    """Make or update the roles in ``settings``' database (an administrator's DSN)."""
    engine = create_async_engine(
        settings.database_dsn, poolclass=NullPool, connect_args=connect_args(settings)
    )
    try:
        async with engine.begin() as connection:
            # Roles are the cluster's: two databases set up at once must not race to make one.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('armillary roles'))")
            )
            await connection.run_sync(_grant, passwords)
    finally:
        await engine.dispose()


def _grant(connection: Connection, passwords: Mapping[str, str]) -> None:
    execute_formatted = _formatter(connection)
    # Nobody but an administrator creates objects outside their own schema.
    connection.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    for service in SERVICE_SCHEMAS:
        role = role_name(service)
        exists = connection.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).scalar()
        if exists is None:
            execute_formatted("CREATE ROLE %I LOGIN NOINHERIT", role)
        if service in passwords:
            execute_formatted("ALTER ROLE %I PASSWORD %L", role, passwords[service])
        execute_formatted("CREATE SCHEMA IF NOT EXISTS %I", service)
        execute_formatted("ALTER SCHEMA %I OWNER TO %I", service, role)
        execute_formatted("REVOKE ALL ON SCHEMA %I FROM PUBLIC", service)
        tables = connection.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind IN ('r', 'p', 'v', 'm')"
            ),
            {"s": service},
        ).scalars()
        for table in list(tables):
            # ALTER TABLE covers views too; a table's own sequences follow it.
            execute_formatted("ALTER TABLE %I.%I OWNER TO %I", service, table, role)
        execute_formatted(
            "ALTER ROLE %I IN DATABASE %I SET search_path = " + search_path([service]),
            role,
            _database(connection),
        )


def _database(connection: Connection) -> str:
    return str(connection.execute(text("SELECT current_database()")).scalar())


def _formatter(connection: Connection) -> Any:
    """Run a utility statement (no bind parameters there) with identifiers and literals
    quoted by PostgreSQL's own ``format()``: a password never meets string formatting."""

    def execute(template: str, *values: str) -> None:
        placeholders = ", ".join(f"CAST(:v{n} AS text)" for n in range(len(values)))
        statement = connection.execute(
            text(f"SELECT format(CAST(:template AS text), {placeholders})"),
            {"template": template, **{f"v{n}": v for n, v in enumerate(values)}},
        ).scalar()
        # As the driver's SQL: a colon in a password is no bind parameter.
        connection.exec_driver_sql(str(statement))

    return execute
