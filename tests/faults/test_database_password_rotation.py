"""Secrets from AWS Secrets Manager (a moto server speaking its protocol): the database
password rotated in the secret and in PostgreSQL is picked up without a restart, by the pool
and by the direct connections (leader lock, LISTEN)."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest
from sqlalchemy import text

from armillary.kit.db import Database, connect_direct
from armillary.kit.secret_sources import SECRETS_MANAGER, SecretSourceError
from armillary.kit.settings import Settings
from armillary.workflows.scheduling.signals import asyncpg_dsn
from tests.conftest import make_settings
from tests.faults.private_services import PrivatePostgres


async def as_superuser(postgres: PrivatePostgres, sql: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(postgres.url("armillary")))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def require_password_for(postgres: PrivatePostgres, role: str) -> None:
    hba = postgres.data / "pg_hba.conf"
    rules = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
    if rules not in hba.read_text():
        hba.write_text(rules + hba.read_text())
    postgres._ctl("reload")


async def current_user(db: Database) -> str:
    async with db.sessionmaker() as session:
        return str((await session.execute(text("SELECT current_user"))).scalar_one())


async def test_a_rotated_database_password_is_picked_up_without_a_restart(
    postgres: PrivatePostgres,
    secretsmanager: object,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: object,
) -> None:
    client = secretsmanager
    role = f"app_{uuid.uuid4().hex[:8]}"
    await as_superuser(postgres, f"CREATE ROLE {role} LOGIN PASSWORD 'first-password-1'")
    require_password_for(postgres, role)
    name = f"armillary/database-{uuid.uuid4().hex}"
    client.create_secret(  # type: ignore[attr-defined]
        Name=name, SecretString=json.dumps({"username": role, "password": "first-password-1"})
    )
    monkeypatch.setenv("ARMILLARY_DATABASE_PASSWORD_SECRET_ID", f"{name}#password")
    url = postgres.url("armillary").replace("postgres@", f"{role}@")
    settings: Settings = make_settings(tmp_path / "home", database_url=url)  # type: ignore[operator]
    assert settings.database_password is not None
    db = Database.from_settings(settings)
    try:
        assert await current_user(db) == role

        # Rotation, as the AWS rotation function does it: the role, then the secret.
        await as_superuser(postgres, f"ALTER ROLE {role} PASSWORD 'second-password-2'")
        client.put_secret_value(  # type: ignore[attr-defined]
            SecretId=name,
            SecretString=json.dumps({"username": role, "password": "second-password-2"}),
        )
        # The process still holds the old password (cached for the TTL)...
        assert "first-password-1" in SECRETS_MANAGER.read(name)
        await db.engine.dispose()  # every pooled connection is gone: the next one is new
        # ...and the refused connection re-reads the secret and succeeds.
        assert await current_user(db) == role
        assert "second-password-2" in SECRETS_MANAGER.read(name)

        # The leader lock and LISTEN connections follow the same way.
        await as_superuser(postgres, f"ALTER ROLE {role} PASSWORD 'third-password-3'")
        client.put_secret_value(  # type: ignore[attr-defined]
            SecretId=name,
            SecretString=json.dumps({"username": role, "password": "third-password-3"}),
        )
        direct_dsn = asyncpg_dsn(db.url)
        assert direct_dsn is not None
        connection = await connect_direct(direct_dsn, db.password_ref)
        try:
            assert await connection.fetchval("SELECT current_user") == role
        finally:
            await connection.close()
    finally:
        await db.dispose()


async def test_an_unknown_secret_is_a_clear_error_without_values(
    secretsmanager: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARMILLARY_SECRET_KEY_SECRET_ID", "armillary/does-not-exist")
    with pytest.raises(SecretSourceError, match="ResourceNotFoundException"):
        Settings()
    client = secretsmanager
    client.create_secret(Name="armillary/plain", SecretString="not-json-at-all-" + "x" * 30)  # type: ignore[attr-defined]
    monkeypatch.setenv("ARMILLARY_SECRET_KEY_SECRET_ID", "armillary/plain")
    assert Settings().resolved_secret_key() == "not-json-at-all-" + "x" * 30
    monkeypatch.setenv("ARMILLARY_SECRET_KEY_SECRET_ID", "armillary/plain#key")
    with pytest.raises(SecretSourceError) as refused:
        Settings()
    assert "not-json" not in str(refused.value)
