"""API keys of a deployment: shown once, stored as a SHA-256 hash, listed by prefix, scoped to
one deployment, revoked at once; and the 401s of predict's access check."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlalchemy import text
from tests.conftest import auth
from tests.integration.serving.support import Platform, Scene, assert_problem

from armillary.kit.cache import MemoryCache, create_cache
from armillary.serving.access import key_cache
from armillary.serving.access import service as access_service


async def _key_rows(scene: Scene) -> list[dict[str, object]]:
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        rows = await session.execute(text("SELECT * FROM serving_api_keys"))
        return [dict(r._mapping) for r in rows]


async def test_a_key_is_shown_once_and_stored_hashed(scene: Scene) -> None:
    await scene.deployed()
    created = await scene.new_key(name="checkout-service")
    key = created["key"]
    assert key.startswith("amk_")
    assert len(key) >= 40
    assert created["prefix"] == key[:8]

    rows = await _key_rows(scene)
    assert len(rows) == 1
    assert rows[0]["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert all(key not in str(value) for value in rows[0].values())

    listed = await scene.client.get(f"{scene.base}/churn-api/keys", headers=auth(scene.token))
    assert listed.status_code == 200, listed.text
    assert key not in listed.text
    (item,) = listed.json()["items"]
    assert (item["id"], item["name"], item["prefix"]) == (
        created["id"],
        "checkout-service",
        key[:8],
    )
    assert item["revoked_at"] is None
    assert item["last_used_at"] is None


async def test_a_key_works_for_its_deployment_only_and_records_its_use(scene: Scene) -> None:
    await scene.deployed()
    await scene.deployed("other")
    key = (await scene.new_key())["key"]
    ok = await scene.client.get(scene.caller_url(), headers={"X-API-Key": key})
    assert ok.status_code == 200, ok.text
    assert ok.json()["kind"] == "api_key"
    assert ok.json()["label"] == "app"
    assert (await _key_rows(scene))[0]["last_used_at"] is not None
    assert_problem(
        await scene.client.get(scene.caller_url("other"), headers={"X-API-Key": key}), 401
    )


async def test_a_revoked_key_stops_at_once(scene: Scene) -> None:
    await scene.deployed()
    created = await scene.new_key()
    headers = {"X-API-Key": created["key"]}
    assert (await scene.client.get(scene.caller_url(), headers=headers)).status_code == 200
    revoked = await scene.client.delete(
        f"{scene.base}/churn-api/keys/{created['id']}", headers=auth(scene.token)
    )
    assert revoked.status_code == 204, revoked.text
    assert_problem(await scene.client.get(scene.caller_url(), headers=headers), 401)
    listed = await scene.client.get(f"{scene.base}/churn-api/keys", headers=auth(scene.token))
    assert listed.json()["items"][0]["revoked_at"] is not None
    missing = await scene.client.delete(
        f"{scene.base}/churn-api/keys/{uuid.uuid4()}", headers=auth(scene.token)
    )
    assert_problem(missing, 404)


async def test_no_or_bad_credentials_are_401(scene: Scene) -> None:
    await scene.deployed()
    key = (await scene.new_key())["key"]
    for headers in (
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "amk_" + "x" * 43},
        {"X-API-Key": key[:-1]},
        {"X-API-Key": key + "x" * 200},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        assert_problem(await scene.client.get(scene.caller_url(), headers=headers), 401)


async def test_key_management_is_for_owners_and_editors(scene: Scene) -> None:
    await scene.deployed()
    viewer = await scene.member("viewer")
    editor = await scene.member("editor")
    url = f"{scene.base}/churn-api/keys"
    assert_problem(
        await scene.client.post(url, json={"name": "x"}, headers=auth(viewer["token"])), 403
    )
    assert_problem(await scene.client.get(url, headers=auth(viewer["token"])), 403)
    made = await scene.client.post(url, json={"name": "x"}, headers=auth(editor["token"]))
    assert made.status_code == 201, made.text
    job = await scene.job_token()
    assert_problem(await scene.client.post(url, json={"name": "x"}, headers=auth(job)), 403)


async def test_a_cached_key_revoked_through_one_process_stops_at_once_in_another(
    scene: Scene, other_process: Platform
) -> None:
    """Predict takes a live key from the cache (no database probe); a revocation made
    through one replica stops the key in every replica at its next request."""
    await scene.deployed()
    created = await scene.new_key()
    headers = {"X-API-Key": created["key"]}
    digest = hashlib.sha256(created["key"].encode()).hexdigest()
    other = other_process.client
    assert (await other.get(scene.caller_url(), headers=headers)).status_code == 200
    cached = await key_cache.lookup(other_process.app.state.runtime.cache, digest)
    assert isinstance(cached, key_cache.LiveKey)
    assert str(cached.id) == created["id"]

    # Served from the cache: the row's hash no longer matches, yet the key still works.
    async def set_hash(value: str) -> None:
        async with scene.platform.app.state.runtime.db.sessionmaker() as session:
            await session.execute(text("UPDATE serving_api_keys SET key_hash = :h"), {"h": value})
            await session.commit()

    await set_hash("x")
    assert (await other.get(scene.caller_url(), headers=headers)).status_code == 200
    await set_hash(digest)

    revoked = await scene.client.delete(
        f"{scene.base}/churn-api/keys/{created['id']}", headers=auth(scene.token)
    )
    assert revoked.status_code == 204, revoked.text
    assert_problem(await other.get(scene.caller_url(), headers=headers), 401)
    assert_problem(await scene.client.get(scene.caller_url(), headers=headers), 401)


async def test_a_reader_that_saw_the_key_live_cannot_undo_its_revocation() -> None:
    """The race: a request reads the key as live from the database, the key is revoked
    (tombstone written), then the request fills the cache. The tombstone stays."""
    cache = MemoryCache()
    live = key_cache.LiveKey(uuid.uuid4(), "app", "d" * 64, None, uuid.uuid4())
    await key_cache.revoked(cache, "d" * 64)
    await key_cache.remember(cache, "d" * 64, live)
    assert await key_cache.lookup(cache, "d" * 64) is False


async def test_a_tombstone_the_cache_cannot_take_raises_so_its_event_is_retried() -> None:
    """With Redis away, writing the tombstone raises (the event consumer then retries it);
    the revoking request itself carries on (its tombstone is deferred to the event)."""
    dead = create_cache("redis://127.0.0.1:1/0", b"k" * 32)
    try:
        with pytest.raises(key_cache.TombstoneNotWritten):
            await key_cache.revoked(dead, "d" * 64)
        await access_service._tombstone(dead, "d" * 64)  # logged, not raised
    finally:
        await dead.close()
