"""Redis killed and restarted under the API (a private redis-server on its own port): while
it is down, requests that need it answer 503 problem+json with Retry-After, never 500; once
it is back, the API heals by itself (no stale pooled connection keeps failing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from armillary.app import create_app
from tests.conftest import Api, _started, auth, client_for, make_settings
from tests.faults.private_services import PrivateRedis, private_redis

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    server = private_redis()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
async def api(clean_pg: str, tmp_path: Path, redis_server: PrivateRedis) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path / "home", database_url=clean_pg, redis_url=redis_server.url)
    app: FastAPI = create_app(settings, configure_logs=False)
    async for started in _started(app):
        async with client_for(started) as http:
            yield Api(http)


async def _statuses(api: Api, token: str, path: str, count: int) -> list[int]:
    return [(await api.client.get(path, headers=auth(token))).status_code for _ in range(count)]


async def test_the_api_outlives_a_redis_restart(api: Api, redis_server: PrivateRedis) -> None:
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    project = await api.create_project(user["token"])
    path = f"/api/v1/projects/{project['slug']}"
    assert await _statuses(api, user["token"], path, 5) == [200] * 5

    redis_server.stop()
    during = [await api.client.get(path, headers=auth(user["token"])) for _ in range(5)]
    for response in during:
        # Served without Redis (a cache miss asks the service) or refused for now: never 500.
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert int(response.headers["retry-after"]) > 0

    redis_server.start()
    await asyncio.sleep(0.5)
    after = await _statuses(api, user["token"], path, 20)
    assert after == [200] * 20, after
    # Writes (rate limits, caches) work again too.
    created = await api.create_project(user["token"])
    assert created["slug"] != project["slug"]
