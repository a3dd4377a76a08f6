"""Rate limiting against the real Redis and against process memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from limits.aio.storage import MemoryStorage, RedisStorage
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Scope
from tests.conftest import redis_db_url

from armillary.kit.errors import PROBLEM_MEDIA_TYPE
from armillary.kit.ratelimit import (
    RateLimiter,
    RateLimitMiddleware,
    RateLimitStoreUnavailable,
    create_rate_limit_storage,
    redis_storage_uri,
    route_class_for,
)
from armillary.kit.request_context import RequestContextMiddleware
from armillary.kit.settings import Settings

REDIS_URL = redis_db_url(7)
# Nothing listens there: every call to the store fails with a connection error.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"
PEER = "203.0.113.7"

MakeLimiter = Callable[..., Awaitable[RateLimiter]]


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    """Builds limiters on the parametrized backend; Redis db 14 is flushed first."""
    backend = request.param
    if backend == "redis":
        client = aioredis.from_url(REDIS_URL)
        await client.flushdb()
        await client.aclose()
    made: list[RateLimiter] = []

    async def make(**overrides: Any) -> RateLimiter:
        settings = _settings(redis_url=REDIS_URL if backend == "redis" else None, **overrides)
        limiter = RateLimiter.from_settings(settings)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await _close(limiter)


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": None,
        "trusted_proxies": [],
        "rate_limit_enabled": True,
        "rate_limit_strategy": "sliding-window-counter",
        "rate_limit_auth": "2/minute",
        "rate_limit_read": "3/minute",
        "rate_limit_write": "2/minute",
        "rate_limit_tracking": "4/minute",
        "rate_limit_on_store_failure": "allow",
        "login_failures_per_client": "3/minute;5/hour",
        "login_failures_per_account": "4/minute",
        "login_failures_per_address": "8/minute",
    }
    values.update(overrides)
    return Settings(**values)


async def _close(limiter: RateLimiter) -> None:
    # limits has no public close; release the redis-py pool so no socket outlives its test.
    if isinstance(limiter.storage, RedisStorage):
        await limiter.storage.bridge.storage.aclose()


async def _identify(scope: Scope) -> str | None:
    # Stands in for bearer-token verification: the test names the caller in a header.
    for key, value in scope["headers"]:
        if key == b"x-test-user":
            return str(value.decode())
    return None


async def _ok(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _client(
    limiter: RateLimiter, settings: Settings | None = None, *, peer: str = PEER
) -> httpx.AsyncClient:
    inner = Starlette(
        routes=[
            Route("/api/v1/items", _ok, methods=["GET", "POST", "DELETE"]),
            Route("/mlflow/p/api/2.0/mlflow/runs/log-batch", _ok, methods=["POST"]),
            Route("/api/v1/auth/token", _ok, methods=["POST"]),
            Route("/api/v1/auth/refresh", _ok, methods=["POST"]),
            Route("/healthz", _ok, methods=["GET"]),
        ]
    )
    app = RequestContextMiddleware(
        RateLimitMiddleware(inner, limiter, _identify), settings or _settings()
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(peer, 40000)),
        base_url="http://testserver",
    )


@pytest.mark.parametrize("strategy", ["sliding-window-counter", "moving-window", "fixed-window"])
async def test_request_past_the_limit_gets_429_with_headers(
    make_limiter: MakeLimiter, strategy: str
) -> None:
    limiter = await make_limiter(rate_limit_strategy=strategy)
    async with _client(limiter) as client:
        allowed = [await client.get("/api/v1/items") for _ in range(3)]
        refused = await client.get("/api/v1/items")

    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [r.headers["RateLimit-Remaining"] for r in allowed] == ["2", "1", "0"]
    assert all(r.headers["RateLimit-Limit"] == "3" for r in allowed)
    assert all(0 <= int(r.headers["RateLimit-Reset"]) <= 60 for r in allowed)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 0 <= int(refused.headers["RateLimit-Reset"]) <= 60
    body = refused.json()
    assert body["status"] == 429
    assert body["title"] == "Too many requests"
    assert body["instance"] == "/api/v1/items"
    assert body["request_id"] == refused.headers["x-request-id"]


async def test_each_user_has_its_own_bucket(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    async with _client(limiter) as client:
        for _ in range(3):
            assert (await client.get("/api/v1/items", headers={"x-test-user": "u1"})).is_success
        alice_over = await client.get("/api/v1/items", headers={"x-test-user": "u1"})
        bob = await client.get("/api/v1/items", headers={"x-test-user": "u2"})
        # Same address, but anonymous: keyed by address, not by the exhausted user.
        anonymous = await client.get("/api/v1/items")

    assert alice_over.status_code == 429
    assert bob.status_code == 200
    assert bob.headers["RateLimit-Remaining"] == "2"
    assert anonymous.status_code == 200


async def test_writes_and_reads_are_limited_separately(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    async with _client(limiter) as client:
        writes = [await client.post("/api/v1/items") for _ in range(2)]
        third_write = await client.delete("/api/v1/items")
        read = await client.get("/api/v1/items")

    assert [w.status_code for w in writes] == [200, 200]
    assert writes[0].headers["RateLimit-Limit"] == "2"
    assert third_write.status_code == 429
    assert read.status_code == 200
    assert read.headers["RateLimit-Limit"] == "3"
    assert read.headers["RateLimit-Remaining"] == "2"


async def test_tracking_writes_have_a_budget_of_their_own(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    log = "/mlflow/p/api/2.0/mlflow/runs/log-batch"
    async with _client(limiter) as client:
        writes = [await client.post("/api/v1/items") for _ in range(3)]
        logged = [await client.post(log) for _ in range(5)]

    assert [w.status_code for w in writes] == [200, 200, 429]
    # The ordinary write budget is spent, the tracking one is not (until its own limit).
    assert [r.status_code for r in logged] == [200, 200, 200, 200, 429]
    assert logged[0].headers["RateLimit-Limit"] == "4"


async def test_auth_routes_are_keyed_by_address_not_user(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    async with _client(limiter) as client:
        token = await client.post("/api/v1/auth/token", headers={"x-test-user": "u1"})
        refresh = await client.post("/api/v1/auth/refresh", headers={"x-test-user": "u2"})
        third = await client.post("/api/v1/auth/token", headers={"x-test-user": "u3"})
        # Auth exhaustion does not spill into the read bucket of the same address.
        read = await client.get("/api/v1/items")
    async with _client(limiter, peer="198.51.100.9") as other_peer:
        elsewhere = await other_peer.post("/api/v1/auth/token")

    assert [token.status_code, refresh.status_code] == [200, 200]
    assert token.headers["RateLimit-Limit"] == "2"
    assert third.status_code == 429
    assert read.status_code == 200
    assert elsewhere.status_code == 200


async def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter()
    async with _client(limiter, _settings(trusted_proxies=[])) as client:
        responses = [
            await client.get("/api/v1/items", headers={"X-Forwarded-For": f"192.0.2.{i}"})
            for i in range(4)
        ]

    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    # The bucket that filled up is the socket peer's.
    assert not (await limiter.hit("read", f"addr:{PEER}")).allowed


async def test_forwarded_address_is_used_behind_a_trusted_proxy(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter()
    settings = _settings(trusted_proxies=["10.0.0.0/8"])
    async with _client(limiter, settings, peer="10.0.0.5") as client:
        first = [
            await client.get("/api/v1/items", headers={"X-Forwarded-For": "198.51.100.1"})
            for _ in range(4)
        ]
        second_client = await client.get(
            "/api/v1/items", headers={"X-Forwarded-For": "198.51.100.2"}
        )

    assert [r.status_code for r in first] == [200, 200, 200, 429]
    assert second_client.status_code == 200
    assert not (await limiter.hit("read", "addr:198.51.100.1")).allowed
    assert (await limiter.hit("read", "addr:10.0.0.5")).allowed


async def test_exempt_paths_and_disabled_limiter_pass_untouched(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter(rate_limit_read="1/minute")
    disabled = await make_limiter(rate_limit_read="1/minute", rate_limit_enabled=False)
    async with _client(limiter) as client:
        health = [await client.get("/healthz") for _ in range(3)]
    async with _client(disabled) as client:
        reads = [await client.get("/api/v1/items") for _ in range(3)]

    assert [r.status_code for r in health] == [200, 200, 200]
    assert "RateLimit-Limit" not in health[0].headers
    assert [r.status_code for r in reads] == [200, 200, 200]


@pytest.mark.parametrize(
    ("policy", "read_status", "write_status"),
    [("allow", 200, 200), ("deny", 503, 503)],
)
async def test_store_failure_fails_auth_closed_and_others_per_setting(
    policy: str, read_status: int, write_status: int
) -> None:
    limiter = RateLimiter.from_settings(
        _settings(redis_url=DEAD_REDIS_URL, rate_limit_on_store_failure=policy)
    )
    try:
        async with _client(limiter) as client:
            auth = await client.post("/api/v1/auth/token")
            read = await client.get("/api/v1/items", headers={"x-test-user": "u1"})
            write = await client.post("/api/v1/items")
    finally:
        await _close(limiter)

    assert auth.status_code == 503
    assert auth.headers["Retry-After"] == "5"
    assert auth.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert auth.json()["status"] == 503
    assert "127.0.0.1:1" not in auth.text
    assert read.status_code == read_status
    assert write.status_code == write_status
    if policy == "deny":
        assert read.headers["Retry-After"] == "5"


async def test_login_helpers_fail_closed_when_store_is_down() -> None:
    limiter = RateLimiter.from_settings(_settings(redis_url=DEAD_REDIS_URL))
    try:
        with pytest.raises(RateLimitStoreUnavailable):
            await limiter.login_blocked("alice@example.com", PEER)
        with pytest.raises(RateLimitStoreUnavailable):
            await limiter.login_failed("alice@example.com", PEER)
        with pytest.raises(RateLimitStoreUnavailable):
            await limiter.hit("auth", f"addr:{PEER}")
    finally:
        await _close(limiter)


async def test_a_client_meets_growing_waits_for_an_account(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter()
    # Looking never counts.
    for _ in range(5):
        assert await limiter.login_blocked("alice@example.com", PEER) is None
    for _ in range(2):
        await limiter.login_failed("alice@example.com", PEER)
    assert await limiter.login_blocked("alice@example.com", PEER) is None

    await limiter.login_failed("alice@example.com", PEER)
    first = await limiter.login_blocked(" Alice@Example.COM", PEER)  # however it is spelt
    assert first is not None
    assert 1 <= first <= 60
    # Past the next rung of the ladder the wait is the longer window's.
    for _ in range(2):
        await limiter.login_failed("alice@example.com", PEER)
    longer = await limiter.login_blocked("alice@example.com", PEER)
    assert longer is not None
    assert 60 < longer <= 3600
    # Other accounts from this client, and this account from other clients, are not blocked.
    assert await limiter.login_blocked("bob@example.com", PEER) is None
    assert await limiter.login_blocked("alice@example.com", "198.51.100.3") is None


async def test_anonymous_failures_cannot_lock_the_owner_out(make_limiter: MakeLimiter) -> None:
    """F9: wrong passwords for the admin from many addresses. Their senders wait; the admin
    signing in from a clean client does not."""
    limiter = await make_limiter()
    for n in range(40):
        attacker = f"192.0.2.{n}"
        for _ in range(2):
            await limiter.login_failed("admin@example.com", attacker)
    assert await limiter.login_blocked("admin@example.com", "192.0.2.7") is not None
    assert await limiter.login_blocked("admin@example.com", PEER) is None


async def test_address_is_blocked_after_failures_across_accounts(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter()
    for i in range(8):
        await limiter.login_failed(f"user{i}@example.com", PEER)

    wait = await limiter.login_blocked("fresh@example.com", PEER)
    assert wait is not None
    assert 1 <= wait <= 60
    assert await limiter.login_blocked("fresh@example.com", "198.51.100.3") is None
    assert await limiter.login_blocked("fresh@example.com", None) is None


async def test_success_clears_the_client_and_account_budgets(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter(login_failures_per_address="3/minute")
    for _ in range(3):
        await limiter.login_failed("alice@example.com", PEER)
    assert await limiter.login_blocked("alice@example.com", PEER) is not None

    await limiter.login_succeeded("alice@example.com", "198.51.100.3")
    assert await limiter.login_blocked("alice@example.com", PEER) is not None  # not that client

    await limiter.login_succeeded("alice@example.com", PEER)
    # The client's budget for the account is clear; the address's, across accounts, is not.
    assert await limiter.login_blocked("bob@example.com", PEER) is not None
    limiter_without_address_limit = await make_limiter()
    for _ in range(3):
        await limiter_without_address_limit.login_failed("carol@example.com", PEER)
    await limiter_without_address_limit.login_succeeded("carol@example.com", PEER)
    assert await limiter_without_address_limit.login_blocked("carol@example.com", PEER) is None


async def test_account_names_do_not_appear_in_redis_keys() -> None:
    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    limiter = RateLimiter.from_settings(_settings(redis_url=REDIS_URL))
    try:
        await limiter.login_failed("alice@example.com", PEER)
        keys = [k.decode() for k in await client.keys("*")]
    finally:
        await client.aclose()
        await _close(limiter)

    assert keys
    assert not [k for k in keys if "alice" in k.lower()]


def test_storage_follows_redis_url() -> None:
    assert isinstance(create_rate_limit_storage(_settings(redis_url=None)), MemoryStorage)
    assert isinstance(create_rate_limit_storage(_settings(redis_url=REDIS_URL)), RedisStorage)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@cache:6379/2", "async+redis://:pw@cache:6379/2"),
        ("rediss://cache:6380", "async+rediss://cache:6380"),
        ("unix:///run/redis.sock?db=1", "async+redis+unix:///run/redis.sock?db=1"),
        ("async+redis://cache", "async+redis://cache"),
    ],
)
def test_redis_storage_uri(url: str, expected: str) -> None:
    assert redis_storage_uri(url) == expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/api/v1/auth/token", "auth"),
        ("POST", "/api/v1/auth/refresh", "auth"),
        ("POST", "/api/v1/auth/logout", "write"),
        ("PATCH", "/api/v1/users/1", "write"),
        ("GET", "/api/v1/auth/me", "read"),
        ("HEAD", "/api/v1/projects", "read"),
        ("POST", "/mlflow/p/api/2.0/mlflow/runs/log-metric", "tracking"),
        ("GET", "/mlflow/p/api/2.0/mlflow/runs/get", "read"),
    ],
)
def test_route_class(method: str, path: str, expected: str) -> None:
    assert route_class_for(method, path) == expected


async def test_a_request_costs_one_redis_call_on_the_librarys_own_counters(
    make_limiter: MakeLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Redis, counting a request and reading its window is one script call (issue 18):
    the library's two-call path is never taken, and the counters it leaves are the ones the
    library itself reads (its window statistics agree at every step)."""
    limiter = await make_limiter(rate_limit_read="5/minute")
    if not isinstance(limiter.storage, RedisStorage):
        assert limiter._one_trip is None  # process memory: no round trip to save
        return
    assert limiter._one_trip is not None
    bridge = limiter.storage.bridge
    redis_calls = 0
    one_trip_script = limiter._one_trip._script
    run_script = type(one_trip_script).__call__

    async def counted(script: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal redis_calls
        redis_calls += script is one_trip_script
        return await run_script(script, *args, **kwargs)

    async def two_calls(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the library's two-call path was taken")

    monkeypatch.setattr(type(limiter._one_trip._script), "__call__", counted)
    item = limiter._limits["read"]
    decisions = []
    for _ in range(6):
        with monkeypatch.context() as patched:
            patched.setattr(bridge, "acquire_sliding_window_entry", two_calls)
            patched.setattr(bridge, "get_sliding_window", two_calls)
            decisions.append(await limiter.hit("read", "alice"))
        library = await limiter._strategy.get_window_stats(item, "request", "read", "alice")
        assert library.remaining == decisions[-1].remaining
    assert redis_calls == 6
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert 1 <= decisions[-1].reset_after <= 60
    # The library's own writes count against the same window: the bucket stays full.
    assert not await limiter._strategy.hit(item, "request", "read", "alice")
    other = await limiter.hit("read", "bob")
    assert other.allowed
    assert other.remaining == 4
