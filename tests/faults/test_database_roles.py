"""A PostgreSQL role and schema per service (issue 14 item 3, ADR 0026): every service's role
is refused every other service's tables, each service migrates its own schema with its own
role, and a database of the old single-schema layout moves into the schemas."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from armillary.kit.db import SERVICE_SCHEMAS
from armillary.migrations.layout import owner_of_table
from armillary.migrations.metadata import target_metadata
from armillary.migrations.runner import upgrade, upgrade_async
from tests.conftest import make_settings
from tests.faults.private_services import PrivatePostgres, private_postgres

# One table of each service, to be read and written by the others.
TABLE = {
    service: next(
        t.name for t in target_metadata.sorted_tables if owner_of_table(t.name) == service
    )
    for service in SERVICE_SCHEMAS
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivatePostgres]:
    server = private_postgres()
    try:
        yield server
    finally:
        server.remove()


def _cli(postgres: PrivatePostgres, database: str, *argv: str, user: str = "postgres") -> str:
    url = postgres.url(database).replace("postgres@", f"{user}@", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    result = subprocess.run(
        [sys.executable, "-m", "armillary.cli", *argv],
        env={**env, "ARMILLARY_DATABASE_URL": url, "ARMILLARY_HOME": str(postgres.root / "home")},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def _connect(postgres: PrivatePostgres, database: str, user: str) -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=postgres.port, user=user, database=database)


@pytest.fixture(scope="module")
def with_roles(cluster: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The embedded way first (an administrator migrates everything), then the roles."""
    cluster.create_database("shared")
    upgrade(make_settings(tmp_path_factory.mktemp("home"), database_url=cluster.url("shared")))
    passwords = tmp_path_factory.mktemp("passwords")
    out = _cli(cluster, "shared", "db", "roles", "--passwords-dir", str(passwords))
    assert "armillary_serving owns schema serving" in out
    for service in SERVICE_SCHEMAS:
        secret = passwords / service
        assert secret.stat().st_mode & 0o777 == 0o600
        assert len(secret.read_text()) >= 32
    return "shared"


async def test_each_role_is_refused_every_other_services_tables(
    cluster: PrivatePostgres, with_roles: str
) -> None:
    for reader, owner in itertools.permutations(SERVICE_SCHEMAS, 2):
        conn = await _connect(cluster, with_roles, f"armillary_{reader}")
        try:
            table = f'"{owner}"."{TABLE[owner]}"'
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"DELETE FROM {table}")  # noqa: S608
            # Unqualified, another service's table is not even there.
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch(f'SELECT 1 FROM "{TABLE[owner]}" LIMIT 1')  # noqa: S608
        finally:
            await conn.close()


async def test_each_role_owns_its_own_tables_and_nothing_outside_its_schema(
    cluster: PrivatePostgres, with_roles: str
) -> None:
    for service in SERVICE_SCHEMAS:
        conn = await _connect(cluster, with_roles, f"armillary_{service}")
        try:
            # Its own tables by their plain names (the role's search path is its schema).
            await conn.fetch(f'SELECT * FROM "{TABLE[service]}" LIMIT 1')  # noqa: S608
            await conn.fetch("SELECT * FROM outbox_events LIMIT 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CREATE TABLE public.planted (id int)")
        finally:
            await conn.close()
    admin = await _connect(cluster, with_roles, "postgres")
    try:
        owners = await admin.fetch(
            "SELECT schemaname, tableowner FROM pg_tables "
            "WHERE schemaname = ANY($1::text[]) GROUP BY 1, 2",
            list(SERVICE_SCHEMAS),
        )
        assert {(r["schemaname"], r["tableowner"]) for r in owners} == {
            (s, f"armillary_{s}") for s in SERVICE_SCHEMAS
        }
    finally:
        await admin.close()


async def test_each_service_migrates_its_own_schema_with_its_own_role(
    cluster: PrivatePostgres,
) -> None:
    cluster.create_database("per_service")
    _cli(cluster, "per_service", "db", "roles")  # schemas and roles, no tables yet
    for service in SERVICE_SCHEMAS:
        _cli(
            cluster,
            "per_service",
            "db",
            "upgrade",
            "--service",
            service,
            user=f"armillary_{service}",
        )
    admin = await _connect(cluster, "per_service", "postgres")
    try:
        for service in SERVICE_SCHEMAS:
            owners = await admin.fetch(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = $1", service
            )
            assert [r["tableowner"] for r in owners] == [f"armillary_{service}"]
            head = await admin.fetchval(f'SELECT version_num FROM "{service}".alembic_version')  # noqa: S608
            assert head.startswith(f"{service}_")
            assert (
                await admin.fetchval(f"SELECT to_regclass('{service}.outbox_events')") is not None
            )
        assert (
            await admin.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        )
    finally:
        await admin.close()


# The heads of the layout before ADR 0026 (identity's up to its outbox, kit_0001's tables).
OLD_HEADS = {
    "identity": "identity_0004",
    "data": "data_0003",
    "workflows": "workflows_0007",
    "registry": "registry_0003",
    "serving": "serving_0002",
}


async def test_a_database_of_the_old_layout_moves_into_the_schemas(
    cluster: PrivatePostgres, tmp_path: Path
) -> None:
    """The layout before ADR 0026: every table in public, one alembic_version for every
    branch (kit's outbox included)."""
    cluster.create_database("old_layout")
    settings = make_settings(tmp_path / "home", database_url=cluster.url("old_layout"))
    # Each service's schema as the old heads left it (later revisions are applied by the
    # upgrade under test); identity's outbox stands in for kit_0001's.
    for service, revision in OLD_HEADS.items():
        await upgrade_async(settings, revision, service=service)
    admin = await _connect(cluster, "old_layout", "postgres")
    try:
        # Services born after ADR 0026 (tracking) had no tables in the old layout.
        for service in OLD_HEADS:
            await admin.execute(f'DROP TABLE "{service}".alembic_version')
        for table in target_metadata.sorted_tables:
            await admin.execute(
                f'ALTER TABLE IF EXISTS "{owner_of_table(table.name)}"."{table.name}" '
                "SET SCHEMA public"
            )
        await admin.execute(
            "CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)"
        )
        old_heads = ["kit_0001", *(h for s, h in OLD_HEADS.items() if s != "identity")]
        old_heads.append("identity_0003")
        await admin.executemany(
            "INSERT INTO public.alembic_version VALUES ($1)", [(h,) for h in old_heads]
        )
        await admin.execute(
            "INSERT INTO public.outbox_events (id, type, payload, created_at, attempts) "
            "VALUES (gen_random_uuid(), 'test.kept', '{}', now(), 0)"
        )
        await admin.execute(
            "INSERT INTO public.data_datasets (id, project_id, name, description, tags, "
            "created_by, created_at, updated_at, version_counter) VALUES (gen_random_uuid(), "
            "gen_random_uuid(), 'kept', '', '[]', gen_random_uuid(), now(), now(), 0)"
        )
    finally:
        await admin.close()

    await upgrade_async(settings)

    admin = await _connect(cluster, "old_layout", "postgres")
    try:
        assert (
            await admin.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        )
        assert await admin.fetchval("SELECT name FROM data.data_datasets") == "kept"
        assert await admin.fetchval("SELECT type FROM identity.outbox_events") == "test.kept"
        for service in SERVICE_SCHEMAS:
            head = await admin.fetchval(f'SELECT version_num FROM "{service}".alembic_version')  # noqa: S608
            assert head == _head(service), (service, head)
        # An administrator's own sessions see every service's table by its plain name.
        assert await admin.fetchval("SELECT count(*) FROM data_datasets") == 1
    finally:
        await admin.close()


def _head(service: str) -> str:
    from alembic.script import ScriptDirectory

    from armillary.migrations.runner import alembic_config

    return str(ScriptDirectory.from_config(alembic_config("sqlite://", service)).get_current_head())
