"""Rate limits through the whole app on the real Redis: 429s with their headers, per-user and
per-address keys, trusted proxies, login throttling, and what a Redis outage does."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth, client_for, redis_db_url

from armillary.app import create_app
from armillary.kit.errors import PROBLEM_MEDIA_TYPE
from armillary.kit.ratelimit import RateLimiter, create_rate_limit_storage
from armillary.kit.settings import Settings

DEAD_REDIS = "redis://127.0.0.1:1/0"
# A Redis database of these tests' own: every test of any session flushes the shared one
# (conftest's db 15) when it starts, which would reset these counters mid-test when other
# sessions run on the same machine.
RATE_LIMIT_REDIS = os.environ.get("ARMILLARY_TEST_RATE_LIMIT_REDIS", redis_db_url(11))

Factory = Callable[..., Settings]


@pytest.fixture
def settings_factory(settings_factory: Factory) -> Factory:
    """conftest's factory, on :data:`RATE_LIMIT_REDIS` (flushed first) unless overridden."""
    redis.Redis.from_url(RATE_LIMIT_REDIS).flushdb()

    def factory(**overrides: object) -> Settings:
        overrides.setdefault("redis_url", RATE_LIMIT_REDIS)
        return settings_factory(**overrides)

    return factory


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings, configure_logs=False)
    async with LifespanManager(app, startup_timeout=60):
        yield app


async def login(client: httpx.AsyncClient, email: str, password: str, **kw: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}, **kw
    )


def assert_throttled(response: httpx.Response, *, limit: int | None = None) -> int:
    """A 429 problem with a sane Retry-After; returns it."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body = response.json()
    assert body["status"] == 429
    assert "Traceback" not in response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    if limit is not None:
        assert response.headers["RateLimit-Limit"] == str(limit)
        assert response.headers["RateLimit-Remaining"] == "0"
        assert 0 <= int(response.headers["RateLimit-Reset"]) <= 60
    return retry_after


async def test_request_past_the_limit_gets_429_with_headers(settings_factory: Factory) -> None:
    async with running(settings_factory(rate_limit_read="3/minute")) as app, client_for(app) as c:
        assert app.state.runtime.settings.redis_url == RATE_LIMIT_REDIS
        token = await Api(c).admin_token()
        remaining = []
        for _ in range(3):
            response = await c.get("/api/v1/auth/me", headers=auth(token))
            assert response.status_code == 200, response.text
            assert response.headers["RateLimit-Limit"] == "3"
            remaining.append(int(response.headers["RateLimit-Remaining"]))
        assert remaining == [2, 1, 0]
        response = await c.get("/api/v1/auth/me", headers=auth(token))
        assert_throttled(response, limit=3)
        assert response.headers["x-request-id"] == response.json()["request_id"]
        # Liveness and metrics are never limited.
        assert (await c.get("/healthz")).status_code == 200


async def test_users_have_their_own_budgets(settings_factory: Factory) -> None:
    async with running(settings_factory(rate_limit_read="3/minute")) as app, client_for(app) as c:
        api = Api(c)
        admin = await api.admin_token()
        other = await api.create_user(admin, "data_scientist")
        for _ in range(3):
            assert (await c.get("/api/v1/auth/me", headers=auth(admin))).status_code == 200
        assert_throttled(await c.get("/api/v1/auth/me", headers=auth(admin)))
        # Same address, other user: a full budget of its own.
        for _ in range(3):
            assert (await c.get("/api/v1/auth/me", headers=auth(other["token"]))).status_code == 200
        assert_throttled(await c.get("/api/v1/auth/me", headers=auth(other["token"])))


async def test_route_classes_have_separate_limits(settings_factory: Factory) -> None:
    settings = settings_factory(rate_limit_write="2/minute", rate_limit_read="100/minute")
    async with running(settings) as app, client_for(app) as c:
        admin = await Api(c).admin_token()
        for i in range(2):
            response = await c.post(
                "/api/v1/projects", json={"slug": f"p{i}", "name": "P"}, headers=auth(admin)
            )
            assert response.status_code == 201, response.text
            assert response.headers["RateLimit-Limit"] == "2"
        response = await c.post(
            "/api/v1/projects", json={"slug": "p9", "name": "P"}, headers=auth(admin)
        )
        assert_throttled(response, limit=2)
        response = await c.get("/api/v1/projects", headers=auth(admin))
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "100"


async def test_auth_routes_are_stricter_and_keyed_by_address(settings_factory: Factory) -> None:
    async with (
        running(settings_factory(rate_limit_auth="2/minute")) as app,
        client_for(app, "10.0.0.1") as first,
        client_for(app, "10.0.0.2") as second,
    ):
        tokens = []
        for _ in range(2):
            response = await login(first, ADMIN_EMAIL, ADMIN_PASSWORD)
            assert response.status_code == 200, response.text
            assert response.headers["RateLimit-Limit"] == "2"
            tokens.append(response.json()["access_token"])
        # Valid credentials do not help once the address has spent its budget...
        assert_throttled(await login(first, ADMIN_EMAIL, ADMIN_PASSWORD), limit=2)
        response = await first.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 20})
        assert_throttled(response, limit=2)
        # ...even when it is someone's token: auth routes are keyed by address.
        response = await first.post(
            "/api/v1/auth/token",
            data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            headers=auth(tokens[0]),
        )
        assert_throttled(response)
        # Another address is unaffected, and so are the caller's other routes.
        assert (await login(second, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200
        assert (await first.get("/api/v1/auth/me", headers=auth(tokens[0]))).status_code == 200


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings_factory: Factory,
) -> None:
    async with (
        running(settings_factory(rate_limit_auth="2/minute")) as app,
        client_for(app, "10.0.0.9") as c,
    ):
        for i in range(2):
            response = await login(
                c, ADMIN_EMAIL, ADMIN_PASSWORD, headers={"X-Forwarded-For": f"192.0.2.{i}"}
            )
            assert response.status_code == 200, response.text
        response = await login(
            c, ADMIN_EMAIL, ADMIN_PASSWORD, headers={"X-Forwarded-For": "192.0.2.77"}
        )
        assert_throttled(response)
        # The peer address is what the audit log records, not the claimed one.
        async with client_for(app, "10.0.0.10") as admin_client:
            token = await Api(admin_client).admin_token()
        response = await c.get(
            "/api/v1/audit", params={"action": "auth.login"}, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        page = response.json()
        addresses = {r["client_address"] for r in page["items"]}
        assert "10.0.0.9" in addresses
        assert not any(a and a.startswith("192.0.2.") for a in addresses)


async def test_forwarded_for_from_a_trusted_proxy_is_the_key(settings_factory: Factory) -> None:
    settings = settings_factory(rate_limit_auth="2/minute", trusted_proxies=["127.0.0.1/32"])
    async with running(settings) as app:
        async with client_for(app, "127.0.0.1") as proxy:
            # Different clients behind the proxy each get their own budget.
            for i in range(4):
                response = await login(
                    proxy,
                    ADMIN_EMAIL,
                    ADMIN_PASSWORD,
                    headers={"X-Forwarded-For": f"198.51.100.{i}"},
                )
                assert response.status_code == 200, response.text
            # One client behind the proxy is limited as itself.
            for _ in range(2):
                response = await login(
                    proxy,
                    ADMIN_EMAIL,
                    ADMIN_PASSWORD,
                    headers={"X-Forwarded-For": "203.0.113.5, 127.0.0.1"},
                )
                assert response.status_code == 200, response.text
            response = await login(
                proxy, ADMIN_EMAIL, ADMIN_PASSWORD, headers={"X-Forwarded-For": "203.0.113.5"}
            )
            assert_throttled(response)
        # A peer that is not the proxy cannot use the header to escape its own budget.
        async with client_for(app, "10.1.1.1") as direct:
            for i in range(2):
                headers = {"X-Forwarded-For": f"198.51.100.{50 + i}"}
                assert (
                    await login(direct, ADMIN_EMAIL, ADMIN_PASSWORD, headers=headers)
                ).status_code == 200
            headers = {"X-Forwarded-For": "198.51.100.99"}
            assert_throttled(await login(direct, ADMIN_EMAIL, ADMIN_PASSWORD, headers=headers))


async def test_anonymous_wrong_passwords_cannot_lock_the_admin_out(
    settings_factory: Factory,
) -> None:
    """F9: five wrong passwords used to block the right one for everybody. Now the guessing
    clients wait (longer the more they fail); the admin signs in from a clean client."""
    settings = settings_factory(
        login_failures_per_client="3/minute;6/hour", login_failures_per_account="5/minute"
    )
    async with (
        running(settings) as app,
        client_for(app, "10.2.0.1") as guesser,
        client_for(app, "10.2.0.2") as second_guesser,
        client_for(app, "10.2.0.9") as admins_laptop,
    ):
        bystander = await Api(admins_laptop).create_user(
            await Api(admins_laptop).admin_token(), "user"
        )
        for client, failures in ((guesser, 3), (second_guesser, 2)):
            for _ in range(failures):
                response = await login(client, ADMIN_EMAIL.upper(), "wrong-password-123456")
                assert response.status_code == 401
        # The account has had its 5: a client that failed for it waits before its own 3.
        assert_throttled(await login(second_guesser, ADMIN_EMAIL, "wrong-password-123456"))
        # The guessers wait, even with the right password.
        retry = assert_throttled(await login(guesser, ADMIN_EMAIL, ADMIN_PASSWORD))
        assert retry <= 60
        assert_throttled(await login(second_guesser, ADMIN_EMAIL, ADMIN_PASSWORD))
        # The admin, from a client that has not failed, is let in.
        assert (await login(admins_laptop, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200
        # Another account from a guessing address is not affected.
        assert (await login(guesser, bystander["email"], bystander["password"])).status_code == 200


async def test_login_failures_throttle_the_address(settings_factory: Factory) -> None:
    async with (
        running(settings_factory(login_failures_per_address="3/minute")) as app,
        client_for(app, "10.3.0.1") as guesser,
        client_for(app, "10.3.0.2") as other,
    ):
        for i in range(3):
            response = await login(guesser, f"guess{i}@example.com", "wrong-password-123456")
            assert response.status_code == 401
        assert_throttled(await login(guesser, ADMIN_EMAIL, ADMIN_PASSWORD))
        assert (await login(other, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 200


@pytest.fixture
async def admin_token(settings_factory: Factory) -> str:
    """A token issued by a healthy app; it stays valid for the next app on the same database."""
    async with running(settings_factory()) as app, client_for(app) as c:
        return await Api(c).admin_token()


@asynccontextmanager
async def with_dead_limiter_store(
    settings: Settings, settings_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    """The full app whose limiter store (only) is an unreachable Redis."""
    dead = create_rate_limit_storage(settings_factory(redis_url=DEAD_REDIS))
    monkeypatch.setattr(RateLimiter, "from_settings", classmethod(lambda cls, s: cls(dead, s)))
    async with running(settings) as app:
        assert app.state.runtime.limiter.storage is dead
        yield app


async def test_store_down_auth_fails_closed_others_allowed(
    settings_factory: Factory, monkeypatch: pytest.MonkeyPatch, admin_token: str
) -> None:
    settings = settings_factory(rate_limit_on_store_failure="allow")
    async with (
        with_dead_limiter_store(settings, settings_factory, monkeypatch) as app,
        client_for(app) as c,
    ):
        for response in (
            await login(c, ADMIN_EMAIL, ADMIN_PASSWORD),
            await c.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 20}),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
            assert int(response.headers["Retry-After"]) >= 1
        response = await c.get("/api/v1/auth/me", headers=auth(admin_token))
        assert response.status_code == 200, response.text
        response = await c.post(
            "/api/v1/projects",
            json={"slug": "still-works", "name": "S"},
            headers=auth(admin_token),
        )
        assert response.status_code == 201, response.text


async def test_store_down_others_denied_when_configured(
    settings_factory: Factory, monkeypatch: pytest.MonkeyPatch, admin_token: str
) -> None:
    settings = settings_factory(rate_limit_on_store_failure="deny")
    async with (
        with_dead_limiter_store(settings, settings_factory, monkeypatch) as app,
        client_for(app) as c,
    ):
        assert (await login(c, ADMIN_EMAIL, ADMIN_PASSWORD)).status_code == 503
        response = await c.get("/api/v1/auth/me", headers=auth(admin_token))
        assert response.status_code == 503
        assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
        assert "Retry-After" in response.headers
        assert (await c.get("/healthz")).status_code == 200
