"""A busy SQLite database (its write lock held past the busy timeout) and an unreachable
PostgreSQL answer 503 problem+json with Retry-After, never a 500, and leave nothing half
written."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from structlog.testing import capture_logs
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth, client_for, make_settings
from tests.ports import free_port

from armillary.app import create_app
from armillary.kit.db import Database
from armillary.kit.errors import PROBLEM_MEDIA_TYPE
from armillary.kit.settings import Settings
from armillary.migrations.runner import upgrade


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert (body["status"], body["title"]) == (503, "Service unavailable")
    text = response.text.lower()
    # No statement, driver message, file path or stack trace reaches the client.
    for leak in ("insert", "select", "sqlite", "asyncpg", "locked", "traceback", "/tmp", ".py"):
        assert leak not in text, leak


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    settings = make_settings(
        tmp_path / "home", database_url=None, redis_url=None, database_busy_timeout_seconds=0.2
    )
    upgrade(settings)
    return settings


@pytest.fixture
async def sqlite_app(sqlite_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(sqlite_settings, configure_logs=False)
    async with LifespanManager(app, startup_timeout=60):
        yield app


@pytest.mark.sqlite
async def test_a_write_that_waits_past_the_busy_timeout_is_a_503_and_writes_nothing(
    sqlite_app: FastAPI, sqlite_settings: Settings
) -> None:
    async with client_for(sqlite_app) as http:
        api = Api(http)
        token = await api.admin_token()
        # Another process holds SQLite's one write lock.
        holder = sqlite3.connect(sqlite_settings.home / "armillary.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with capture_logs() as logs:
                response = await http.post(
                    "/api/v1/projects", json={"slug": "busy", "name": "Busy"}, headers=auth(token)
                )
            _assert_unavailable(response)
            (logged,) = [e for e in logs if e["event"] == "database_unavailable"]
            assert (logged["log_level"], logged["reason"]) == ("warning", "busy")
            # Neither the statement nor its parameters are logged.
            assert "insert" not in str(logs).lower()
            assert "Busy" not in str(logs)
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        # Nothing of the failed request was committed; the retry it was told to make works.
        listed = await http.get("/api/v1/projects", headers=auth(token))
        assert listed.status_code == 200, listed.text
        assert "busy" not in listed.text
        retried = await http.post(
            "/api/v1/projects", json={"slug": "busy", "name": "Busy"}, headers=auth(token)
        )
        assert retried.status_code == 201, retried.text


async def test_a_request_while_postgresql_is_unreachable_is_a_503(
    settings_factory: Callable[..., Settings],
) -> None:
    # Nothing listens on a port just freed: every connection attempt is refused.
    closed = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/armillary"
    app = create_app(settings_factory(database_url=closed), configure_logs=False)
    async with client_for(app) as http:
        with capture_logs() as logs:
            response = await http.post(
                "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
    _assert_unavailable(response)
    (logged,) = [e for e in logs if e["event"] == "database_unavailable"]
    assert (logged["log_level"], logged["reason"]) == ("warning", "unreachable")
    assert ADMIN_PASSWORD not in str(logs)
    await app.state.runtime.db.dispose()


async def test_signed_in_requests_while_postgresql_is_gone_are_503s(app: FastAPI, api: Api) -> None:
    token = await api.admin_token()
    runtime = app.state.runtime
    reachable = runtime.db
    # PostgreSQL goes away after start-up: every connection from now on is refused. The token
    # check (run by the rate limiter, before any route) needs the database too.
    runtime.db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/armillary")
    try:
        with capture_logs() as logs:
            read = await api.client.get("/api/v1/projects", headers=auth(token))
            write = await api.client.post(
                "/api/v1/projects", json={"slug": "gone", "name": "Gone"}, headers=auth(token)
            )
    finally:
        await runtime.db.dispose()
        runtime.db = reachable
    _assert_unavailable(read)
    _assert_unavailable(write)
    assert not [e for e in logs if e["event"] == "unhandled_error"]
    # Back again: nothing of the refused write exists.
    listed = await api.client.get("/api/v1/projects", headers=auth(token))
    assert listed.status_code == 200, listed.text
    assert "gone" not in listed.text
