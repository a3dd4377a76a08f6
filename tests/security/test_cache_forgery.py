"""Item 5 / F3's second step: a task that reached Redis wrote an `armillary:principal:*` entry
making its user an admin. Cached authorization answers are MAC'd under a key derived from the
platform secret, so an entry written straight into Redis is ignored."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from tests.conftest import REDIS_URL, Api, auth

from armillary.kit.cache import EntrySigner, RedisCache


async def test_a_forged_principal_entry_in_redis_makes_nobody_an_admin(
    api: Api, app: FastAPI
) -> None:
    admin = await api.admin_token()
    viewer = await api.create_user(admin, "user")
    key = f"armillary:principal:{viewer['id']}"
    # The viewer's own answer is cached by their first request.
    assert (
        await api.client.get("/api/v1/projects", headers=auth(viewer["token"]))
    ).status_code == 200
    raw = redis_client()
    try:
        genuine = await raw.get(key)
        assert genuine is not None
        assert genuine.startswith(b"v1.")
        forged = {
            "user_id": viewer["id"],
            "email": viewer["email"],
            "name": "User",
            "role": "admin",
            "active": True,
        }
        # Plain JSON, as the attack wrote it, and the genuine entry's MAC on a changed body.
        mac = genuine.split(b".")[1]
        for entry in (orjson.dumps(forged), b"v1." + mac + b"." + orjson.dumps(forged)):
            await raw.set(key, entry, ex=300)
            response = await api.client.get("/api/v1/users", headers=auth(viewer["token"]))
            assert response.status_code == 403, response.text
            await raw.set(key, entry, ex=300)
            response = await api.client.get("/api/v1/audit", headers=auth(viewer["token"]))
            assert response.status_code == 403, response.text
    finally:
        await raw.aclose()


async def test_a_genuine_entry_moved_under_another_key_is_ignored() -> None:
    signer = EntrySigner(b"k" * 32)
    cache = RedisCache(REDIS_URL, signer, prefix="armillary-test-forgery:")
    raw = redis_client()
    try:
        await cache.set("principal:admin", {"role": "admin"}, 60)
        assert await cache.get("principal:admin") == {"role": "admin"}
        await raw.set(
            "armillary-test-forgery:principal:viewer",
            await raw.get("armillary-test-forgery:principal:admin"),
        )
        assert await cache.get("principal:viewer") is None
        assert await cache.get_many(["principal:viewer", "principal:admin"]) == [
            None,
            {"role": "admin"},
        ]
        # Another platform secret (or none) cannot write entries this one accepts.
        other = RedisCache(REDIS_URL, EntrySigner(b"o" * 32), prefix="armillary-test-forgery:")
        await other.set("principal:viewer", {"role": "admin"}, 60)
        assert await cache.get("principal:viewer") is None
        await other.close()
    finally:
        await cache.delete_pattern("*")
        await cache.close()
        await raw.aclose()


def test_a_short_signing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="256 bits"):
        EntrySigner(b"short")


def redis_client() -> aioredis.Redis:
    return aioredis.Redis.from_url(REDIS_URL)
