"""Shared fixtures: a migrated PostgreSQL database cleaned before each test, Redis, the app."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis
import structlog
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from armillary.app import create_app
from armillary.kit.logging import configure_logging
from armillary.kit.settings import Settings
from armillary.migrations.runner import upgrade

pytest_plugins = ["tests.moto_server", "tests.ordering"]

PG_HOST = os.environ.get("ARMILLARY_TEST_PG_HOST", "127.0.0.1:5432")


def xdist_index() -> int:
    """This pytest-xdist worker's number (0 when not distributed)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def redis_db_url(base: int) -> str:
    """A Redis database of this xdist worker's own: tests flush theirs, never a neighbour's.
    Four workers at most share the 16 databases (bases 15, 11 and 7, counting down)."""
    return f"redis://127.0.0.1:6379/{base - xdist_index()}"


REDIS_URL = os.environ.get("ARMILLARY_TEST_REDIS", redis_db_url(15))
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-for-tests"
TEST_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    """Logs as in production (JSON, one line per event): structlog's default console renderer
    pretty-prints tracebacks, which is slow and buries the test output."""
    configure_logging("WARNING", json=True)
    # structlog.testing.capture_logs cannot see a logger that was cached at its first use, and
    # which loggers an earlier test in the same process used depends on the order tests run.
    structlog.configure(cache_logger_on_first_use=False)


def _worker_db_name() -> str:
    # Per process, so that concurrent test runs on one machine never share a database.
    return f"armillary_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    name = _worker_db_name()

    async def admin(*statements: str) -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@{PG_HOST}/postgres")
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    )
    url = f"postgresql+asyncpg://postgres@{PG_HOST}/{name}"
    upgrade(Settings(database_url=url, secret_key=TEST_SECRET))  # type: ignore[arg-type]
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def truncate_sql(pg_url: str) -> str:
    from armillary.migrations.metadata import target_metadata

    tables = ", ".join(f'"{t.name}"' for t in target_metadata.sorted_tables)
    return f"TRUNCATE {tables} RESTART IDENTITY CASCADE"


def make_settings(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "secret_key": TEST_SECRET,
        "admin_email": ADMIN_EMAIL,
        "admin_password": ADMIN_PASSWORD,
        # Cheap argon2id for speed; the real parameters are tested once on their own.
        "argon2_time_cost": 1,
        "argon2_memory_cost_kib": 8,
        "argon2_parallelism": 1,
        "rate_limit_auth": "1000/minute",
        "rate_limit_read": "10000/minute",
        "rate_limit_write": "10000/minute",
        "login_failures_per_client": "1000/minute",
        "login_failures_per_account": "1000/minute",
        "login_failures_per_address": "1000/minute",
        "log_json": True,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def clean_pg(pg_url: str, truncate_sql: str) -> str:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(text(truncate_sql))
    await engine.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()
    return pg_url


@pytest.fixture
def settings_factory(tmp_path: Path, clean_pg: str) -> Callable[..., Settings]:
    """Settings for the PostgreSQL + Redis shape; keyword arguments override."""

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {"database_url": clean_pg, "redis_url": REDIS_URL}
        base.update(overrides)
        return make_settings(tmp_path / "home", **base)

    return factory


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


async def _started(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with LifespanManager(app, startup_timeout=60):
        yield app


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async for started in _started(create_app(settings, configure_logs=False)):
        yield started


def client_for(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


class Api:
    """Small helpers over the HTTP API, so tests read like a user's steps."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def login(self, email: str, password: str) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def token(self, email: str, password: str) -> str:
        return str((await self.login(email, password))["access_token"])

    async def admin_token(self) -> str:
        return await self.token(ADMIN_EMAIL, ADMIN_PASSWORD)

    async def create_user(
        self, admin_token: str, role: str, email: str | None = None
    ) -> dict[str, Any]:
        email = email or f"{role}-{secrets.token_hex(4)}@example.com"
        password = "pw-" + secrets.token_hex(8)
        response = await self.client.post(
            "/api/v1/users",
            json={"email": email, "name": role.title(), "role": role, "password": password},
            headers=auth(admin_token),
        )
        assert response.status_code == 201, response.text
        user = dict(response.json())
        user["password"] = password
        user["token"] = await self.token(email, password)
        return user

    async def create_project(self, token: str, slug: str | None = None) -> dict[str, Any]:
        slug = slug or f"proj-{secrets.token_hex(3)}"
        response = await self.client.post(
            "/api/v1/projects", json={"slug": slug, "name": slug.title()}, headers=auth(token)
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)
