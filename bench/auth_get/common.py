"""Shared set-up for the authenticated-GET benchmark and its profile.

Everything here talks to loopback services only: PostgreSQL on 127.0.0.1:5432 (user
``postgres``, trust auth), Redis on 127.0.0.1:6379 (database 13).
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent.parent
RESULTS = REPO / "bench" / "results"

DB_NAME = "armillary_bench"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH_DSN = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/13"

PROJECT_SLUG = "bench-project"
PROJECT_PATH = f"/api/v1/projects/{PROJECT_SLUG}"
ADMIN_EMAIL = "bench-admin@armillary.dev"
SCIENTIST_EMAIL = "bench-scientist@armillary.dev"
# Limits far above anything one worker can reach, so the limiter counts but never refuses.
HIGH_LIMIT = "100000000/minute"


@dataclass
class BenchConfig:
    """Secrets are made fresh for each run; nothing here is reused outside it."""

    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    scientist_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="armillary-bench-")))

    def armillary_env(self, **overrides: str) -> dict[str, str]:
        env = {
            "ARMILLARY_PROFILE": "embedded",
            "ARMILLARY_HOME": str(self.home),
            "ARMILLARY_DATABASE_URL": DATABASE_URL,
            "ARMILLARY_REDIS_URL": REDIS_URL,
            "ARMILLARY_SECRET_KEY": self.secret_key,
            "ARMILLARY_ADMIN_EMAIL": ADMIN_EMAIL,
            "ARMILLARY_ADMIN_PASSWORD": self.admin_password,
            "ARMILLARY_RATE_LIMIT_READ": HIGH_LIMIT,
            "ARMILLARY_RATE_LIMIT_WRITE": HIGH_LIMIT,
            "ARMILLARY_RATE_LIMIT_AUTH": "10000/minute",
            "ARMILLARY_LOG_LEVEL": "WARNING",
        }
        env.update(overrides)
        return env

    def settings(self, **overrides: Any) -> Any:
        from armillary.kit.settings import Settings

        values: dict[str, Any] = {
            "home": self.home,
            "database_url": DATABASE_URL,
            "redis_url": REDIS_URL,
            "secret_key": self.secret_key,
            "admin_email": ADMIN_EMAIL,
            "admin_password": self.admin_password,
            "rate_limit_read": HIGH_LIMIT,
            "rate_limit_write": HIGH_LIMIT,
            "rate_limit_auth": "10000/minute",
            "log_level": "WARNING",
        }
        values.update(overrides)
        return Settings(**values)

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


# --- services ------------------------------------------------------------------------------


async def _recreate_database() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()


def prepare_services(config: BenchConfig) -> None:
    """Fresh ``armillary_bench`` database at the newest schema, empty Redis database 13."""
    import redis

    from armillary.migrations.runner import upgrade

    asyncio.run(_recreate_database())
    upgrade(config.settings())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


# --- seeding through the API ---------------------------------------------------------------


@dataclass
class Seed:
    token: str
    body: dict[str, Any]
    jwks: dict[str, Any]


def seed_payloads(config: BenchConfig) -> dict[str, Any]:
    return {
        "admin_login": {"username": ADMIN_EMAIL, "password": config.admin_password},
        "scientist": {
            "email": SCIENTIST_EMAIL,
            "name": "Bench Scientist",
            "role": "data_scientist",
            "password": config.scientist_password,
        },
        "scientist_login": {"username": SCIENTIST_EMAIL, "password": config.scientist_password},
        "project": {
            "slug": PROJECT_SLUG,
            "name": "Benchmark project",
            "description": "Read by the authenticated GET benchmark.",
        },
    }


def _check(response: Any, expected: int, what: str) -> Any:
    if response.status_code != expected:
        raise SystemExit(
            f"{what}: expected {expected}, got {response.status_code}: {response.text}"
        )
    return response.json()


def seed_sync(client: Any, config: BenchConfig) -> Seed:
    """Admin logs in, creates a data scientist, who logs in and creates the project."""
    p = seed_payloads(config)
    admin = _check(client.post("/api/v1/auth/token", data=p["admin_login"]), 200, "admin login")
    admin_headers = {"Authorization": f"Bearer {admin['access_token']}"}
    _check(
        client.post("/api/v1/users", json=p["scientist"], headers=admin_headers), 201, "create user"
    )
    tokens = _check(client.post("/api/v1/auth/token", data=p["scientist_login"]), 200, "login")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    _check(
        client.post("/api/v1/projects", json=p["project"], headers=headers), 201, "create project"
    )
    body = _check(client.get(PROJECT_PATH, headers=headers), 200, "get project")
    jwks = _check(client.get("/api/v1/auth/jwks"), 200, "jwks")
    return Seed(token=tokens["access_token"], body=body, jwks=jwks)


async def seed_async(client: Any, config: BenchConfig) -> Seed:
    p = seed_payloads(config)
    admin = _check(
        await client.post("/api/v1/auth/token", data=p["admin_login"]), 200, "admin login"
    )
    admin_headers = {"Authorization": f"Bearer {admin['access_token']}"}
    _check(
        await client.post("/api/v1/users", json=p["scientist"], headers=admin_headers),
        201,
        "create user",
    )
    tokens = _check(
        await client.post("/api/v1/auth/token", data=p["scientist_login"]), 200, "login"
    )
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    _check(
        await client.post("/api/v1/projects", json=p["project"], headers=headers),
        201,
        "create project",
    )
    body = _check(await client.get(PROJECT_PATH, headers=headers), 200, "get project")
    jwks = _check(await client.get("/api/v1/auth/jwks"), 200, "jwks")
    return Seed(token=tokens["access_token"], body=body, jwks=jwks)


# --- machine -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info() -> dict[str, str]:
    model = "?"
    for line in _run(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    wrk = _run(["wrk", "--version"]).splitlines()
    return {
        "nproc": _run(["nproc"]),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk[0].split(" Copyright")[0] if wrk else "?",
        "redis": _run(["redis-server", "--version"]).split(" sha=")[0],
    }


def code_revision() -> str:
    """The commit measured, and whether src/ had uncommitted changes (others edit it too)."""
    head = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "?"
    dirty = _run(
        ["git", "--no-optional-locks", "-C", str(REPO), "status", "--porcelain", "--", "src"]
    )
    return f"{head} + uncommitted changes in src/" if dirty else f"{head} (src/ clean)"


async def postgres_version() -> str:
    import asyncpg

    conn = await asyncpg.connect(PG_BENCH_DSN)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def clean_env() -> dict[str, str]:
    """The caller's environment without any ARMILLARY_ or BENCH_ setting that could leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ARMILLARY_", "BENCH_"))}
