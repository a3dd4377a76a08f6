"""The key paths on the embedded shape: SQLite under ARMILLARY_HOME, in-memory cache and rate
limiter, in-process bus. Keeps the shape a newcomer runs honest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from limits.aio.storage import MemoryStorage
from sqlalchemy import text
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth, client_for, make_settings

from armillary.app import create_app
from armillary.kit.cache import MemoryCache
from armillary.kit.settings import Settings
from armillary.migrations.runner import upgrade

pytestmark = pytest.mark.sqlite


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "home", database_url=None, redis_url=None)
    upgrade(settings)
    return settings


@pytest.fixture
async def sqlite_app(sqlite_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(sqlite_settings, configure_logs=False)
    async with LifespanManager(app, startup_timeout=60):
        yield app


@pytest.fixture
async def sqlite_client(sqlite_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sqlite_app) as client:
        yield client


@pytest.fixture
def sqlite_api(sqlite_client: httpx.AsyncClient) -> Api:
    return Api(sqlite_client)


async def test_runs_embedded(sqlite_app: FastAPI, sqlite_settings: Settings) -> None:
    runtime = sqlite_app.state.runtime
    assert runtime.db.is_sqlite
    assert (sqlite_settings.home / "armillary.db").exists()
    assert isinstance(runtime.cache, MemoryCache)
    assert isinstance(runtime.limiter.storage, MemoryStorage)


async def test_login_users_and_projects(sqlite_api: Api) -> None:
    c = sqlite_api.client
    pair = await sqlite_api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    admin = pair["access_token"]
    assert pair["token_type"] == "bearer"
    me = (await c.get("/api/v1/auth/me", headers=auth(admin))).json()
    assert (me["email"], me["role"]) == (ADMIN_EMAIL, "admin")
    response = await c.post(
        "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": "not-the-password"}
    )
    assert response.status_code == 401

    ds = await sqlite_api.create_user(admin, "data_scientist")
    outsider = await sqlite_api.create_user(admin, "data_scientist")
    project = await sqlite_api.create_project(ds["token"], "embedded")

    response = await c.get("/api/v1/projects/embedded", headers=auth(ds["token"]))
    assert response.status_code == 200
    assert response.json()["id"] == project["id"]
    assert (
        await c.get(f"/api/v1/projects/{project['id']}", headers=auth(ds["token"]))
    ).status_code == 200
    listed = (await c.get("/api/v1/projects", headers=auth(ds["token"]))).json()
    assert [p["slug"] for p in listed["items"]] == ["embedded"]
    assert listed["total"] == 1

    assert (
        await c.get("/api/v1/projects/embedded", headers=auth(outsider["token"]))
    ).status_code == 404
    assert (await c.get("/api/v1/projects", headers=auth(outsider["token"]))).json()["total"] == 0

    # A deactivated user's unexpired token is refused on the next request.
    response = await c.delete(f"/api/v1/users/{outsider['id']}", headers=auth(admin))
    assert response.status_code == 200
    assert (await c.get("/api/v1/auth/me", headers=auth(outsider["token"]))).status_code == 401


async def test_membership_change_invalidates_the_cached_permission(sqlite_api: Api) -> None:
    c = sqlite_api.client
    admin = await sqlite_api.admin_token()
    owner = await sqlite_api.create_user(admin, "data_scientist")
    member = await sqlite_api.create_user(admin, "data_scientist")
    await sqlite_api.create_project(owner["token"], "shared")
    as_member = auth(member["token"])

    assert (await c.get("/api/v1/projects/shared", headers=as_member)).status_code == 404
    response = await c.put(
        f"/api/v1/projects/shared/members/{member['id']}",
        json={"role": "viewer"},
        headers=auth(owner["token"]),
    )
    assert response.status_code == 200, response.text
    response = await c.get("/api/v1/projects/shared", headers=as_member)
    assert response.status_code == 200
    assert response.json()["my_role"] == "viewer"
    assert (
        await c.patch("/api/v1/projects/shared", json={"name": "X"}, headers=as_member)
    ).status_code == 403

    response = await c.put(
        f"/api/v1/projects/shared/members/{member['id']}",
        json={"role": "editor"},
        headers=auth(owner["token"]),
    )
    assert response.status_code == 200
    assert (
        await c.patch("/api/v1/projects/shared", json={"name": "X"}, headers=as_member)
    ).status_code == 200

    response = await c.delete(
        f"/api/v1/projects/shared/members/{member['id']}", headers=auth(owner["token"])
    )
    assert response.status_code == 204
    assert (await c.get("/api/v1/projects/shared", headers=as_member)).status_code == 404


async def test_refresh_reuse_revokes_the_family(sqlite_api: Api) -> None:
    c = sqlite_api.client
    first = await sqlite_api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    response = await c.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]

    reused = await c.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    # The whole family is gone, including the token issued by the legitimate rotation.
    response = await c.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert response.status_code == 401
    # Another family (another login) is untouched.
    other = await sqlite_api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    response = await c.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert response.status_code == 200


async def test_audit_records_and_verification(
    sqlite_api: Api, sqlite_app: FastAPI, sqlite_settings: Settings
) -> None:
    c = sqlite_api.client
    admin = await sqlite_api.admin_token()
    ds = await sqlite_api.create_user(admin, "data_scientist")
    project = await sqlite_api.create_project(ds["token"], "audited")
    # Concurrent writers share one chain on SQLite too.
    await asyncio.gather(*(sqlite_api.create_user(admin, "user") for _ in range(5)))

    response = await c.get(
        "/api/v1/audit",
        params={"resource_type": "project", "resource_id": project["id"]},
        headers=auth(admin),
    )
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(r["action"], r["actor_id"], r["outcome"]) for r in items] == [
        ("projects.create", ds["id"], "success")
    ]
    assert items[0]["client_address"] == "127.0.0.1"
    assert items[0]["request_id"]
    created = (
        await c.get("/api/v1/audit", params={"action": "users.create"}, headers=auth(admin))
    ).json()
    assert created["total"] == 6
    assert ds["password"] not in json.dumps(created)

    response = await c.get("/api/v1/audit/verify", headers=auth(admin))
    report = response.json()
    assert report["ok"] is True, report
    assert report["records_checked"] == report["last_seq"] > 12
    assert (sqlite_settings.home / "audit" / "checkpoint.json").exists()

    async with sqlite_app.state.runtime.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE identity_audit_records SET outcome = 'denied' WHERE seq = 3")
        )
    report = (await c.get("/api/v1/audit/verify", headers=auth(admin))).json()
    assert report["ok"] is False
    assert "record 3 was altered" in report["problems"]
