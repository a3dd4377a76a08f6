"""The deployment directory predict uses: resolved deployments cached in memory, swapped (not
mutated) when the deployment changes or a followed alias moves; model files fetched from the
store and verified; the platform's own auto-rollback. Also the registry's private resolve
route it is built on."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from tests.conftest import auth
from tests.integration.registry.models_for_tests import onnx_bytes, skops_bytes
from tests.integration.serving.support import Scene, variants

from armillary.kit import context
from armillary.kit.errors import Conflict, NotFound
from armillary.registry.client import RegistryClient
from armillary.serving.deployments.artifacts import ModelUnavailable
from armillary.serving.deployments.resolve import ResolvedDeployment


def _versions(resolved: ResolvedDeployment | None) -> dict[str, int]:
    assert resolved is not None
    return {v.name: v.model_version for v in resolved.variants}


async def test_moving_a_followed_alias_reroutes_without_touching_the_deployment(
    scene: Scene,
) -> None:
    await scene.deployed()
    pinned = await scene.deployed(
        "pinned", variants=variants(("only", {"version": 1, "weight": 1}))
    )
    directory = scene.platform.serving.directory
    held = await directory.get(scene.slug, "churn-api")
    other = await directory.get(scene.slug, "pinned")
    assert _versions(held) == {"champion": 1, "challenger": 2}

    await scene.set_alias("champion", 2)  # through the registry's public API

    now = await directory.get(scene.slug, "churn-api")
    assert _versions(now) == {"champion": 2, "challenger": 2}
    assert now is not None
    assert held is not None
    assert now.config_version == held.config_version == 1
    assert now.variants[0].model_version_id != held.variants[0].model_version_id
    # A request in flight keeps what it got; an unrelated deployment is not even reloaded.
    assert _versions(held) == {"champion": 1, "challenger": 2}
    assert await directory.get(scene.slug, "pinned") is other
    assert other is not None
    assert other.id == uuid.UUID(pinned["id"])
    # And the API answers the same.
    read = await scene.client.get(f"{scene.base}/churn-api", headers=auth(scene.token))
    assert read.json()["variants"][0]["resolved"]["model_version"] == 2


async def test_a_new_configuration_replaces_the_cached_one(scene: Scene) -> None:
    await scene.deployed()
    directory = scene.platform.serving.directory
    first = await directory.get(scene.slug, "churn-api")
    assert first is not None
    assert await directory.get(scene.slug, "churn-api") is first
    body = {
        "variants": variants(("only", {"version": 2, "weight": 1})),
        "routing": {"mode": "random"},
    }
    response = await scene.client.put(
        f"{scene.base}/churn-api", json=body, headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    second = await directory.get(scene.project["id"], "churn-api")
    assert second is not None
    assert (second.config_version, second.routing_mode) == (2, "random")
    assert _versions(second) == {"only": 2}
    assert (first.config_version, _versions(first)) == (1, {"champion": 1, "challenger": 2})


class _Counting:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    async def resolve(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        self.calls += 1
        await asyncio.sleep(0.01)
        answer: dict[str, Any] | None = await self.inner.resolve(*args, **kwargs)
        return answer


async def test_concurrent_misses_load_once(scene: Scene) -> None:
    await scene.deployed()
    serving = scene.platform.serving
    counting = _Counting(serving.registry)
    serving.registry = counting
    try:
        found = await asyncio.gather(
            *(serving.directory.get(scene.slug, "churn-api") for _ in range(20))
        )
    finally:
        serving.registry = counting.inner
    assert all(f is found[0] for f in found)
    assert counting.calls == 2  # one per variant, not per request
    assert await serving.directory.get(scene.slug, "nope") is None


async def test_model_files_come_verified_onnx_first(scene: Scene) -> None:
    await scene.deployed()
    directory = scene.platform.serving.directory
    resolved = await directory.get(scene.slug, "churn-api")
    assert resolved is not None
    champion, challenger = resolved.variants
    onnx_file = await directory.model_file(champion)
    assert onnx_file.format == "onnx"
    assert onnx_file.path.name == "model.onnx"
    assert onnx_file.path.read_bytes() == onnx_bytes()
    skops_file = await directory.model_file(challenger)
    assert skops_file.format == "skops"
    assert skops_file.path.read_bytes() == skops_bytes()
    assert await directory.model_file(champion) == onnx_file  # cached


async def test_a_tampered_model_file_is_refused(scene: Scene) -> None:
    await scene.upload_version("onnx")  # version 3
    serving = scene.platform.serving
    registry = serving.registry
    assert isinstance(registry, RegistryClient)
    answer = await registry.resolve(scene.project_id, "churn", version=3)
    assert answer is not None
    key = answer["artifacts"]["model.onnx"]["key"]
    original = await serving.store.get_bytes(key)
    assert hashlib.sha256(original).hexdigest() == answer["artifacts"]["model.onnx"]["sha256"]
    tampered = original[:-1] + bytes([original[-1] ^ 1])
    await serving.store.put_bytes(key, tampered)

    await scene.deployed(variants=variants(("only", {"version": 3, "weight": 1})))
    resolved = await serving.directory.get(scene.slug, "churn-api")
    assert resolved is not None
    with pytest.raises(ModelUnavailable, match="integrity"):
        await serving.directory.model_file(resolved.variants[0])
    folder = serving.cache_dir / "models" / resolved.variants[0].model_version_id
    assert list(folder.iterdir()) == []  # nothing a loader could pick up

    await serving.store.put_bytes(key, original)
    fetched = await serving.directory.model_file(resolved.variants[0])
    assert fetched.path.read_bytes() == original


async def test_auto_rollback_removes_the_variant_as_the_platform(scene: Scene) -> None:
    created = await scene.deployed()
    directory = scene.platform.serving.directory
    before = await directory.get(scene.slug, "churn-api")
    # As if triggered by someone's feedback request: the platform is still the actor.
    token = context.bind(context.RequestContext(request_id="feedback-1", user_id=uuid.uuid4()))
    try:
        version = await directory.auto_rollback(
            uuid.UUID(created["id"]), "challenger", "significantly worse (p < 0.001)"
        )
    finally:
        context.reset(token)
    assert version == 2
    after = await directory.get(scene.slug, "churn-api")
    assert _versions(after) == {"champion": 1}
    assert _versions(before) == {"champion": 1, "challenger": 2}
    history = await scene.client.get(f"{scene.base}/churn-api/configs", headers=auth(scene.token))
    latest = history.json()["items"][0]
    assert (latest["kind"], latest["created_by"], latest["reason"]) == (
        "auto_rollback",
        None,
        "significantly worse (p < 0.001)",
    )
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        rows = (
            await session.execute(
                text("SELECT payload FROM outbox_events WHERE type = 'audit.entry'")
            )
        ).all()
    entries = [r.payload for r in rows if r.payload["action"] == "deployments.auto_rollback"]
    assert len(entries) == 1
    assert entries[0]["actor_label"] == "system"
    assert entries[0]["actor_id"] is None
    assert entries[0]["request_id"] == "feedback-1"
    assert entries[0]["details"]["removed_variant"] == "challenger"

    with pytest.raises(Conflict):
        await directory.auto_rollback(uuid.UUID(created["id"]), "champion", "no")
    with pytest.raises(NotFound):
        await directory.auto_rollback(uuid.UUID(created["id"]), "challenger", "again")


async def test_the_registry_resolves_privately(scene: Scene) -> None:
    registry = scene.platform.serving.registry
    assert isinstance(registry, RegistryClient)
    by_alias = await registry.resolve(scene.project_id, "churn", alias="champion")
    by_version = await registry.resolve(str(scene.project_id), "churn", version=1)
    assert by_alias == by_version
    assert by_alias is not None
    assert (by_alias["model"], by_alias["version"], by_alias["format"]) == ("churn", 1, "onnx")
    assert set(by_alias["artifacts"]["model.onnx"]) == {"key", "size_bytes", "sha256"}
    assert await registry.resolve(scene.project_id, "churn", version=9) is None
    assert await registry.resolve(scene.project_id, "churn", alias="nowhere") is None
    assert await registry.resolve(uuid.uuid4(), "churn", version=1) is None
    with pytest.raises(ValueError):
        await registry.resolve(scene.project_id, "churn", version=1, alias="champion")
    # Never on the public app, whoever asks.
    public = await scene.client.get(
        "/internal/v1/model-versions/resolve",
        params={"project_id": scene.project["id"], "model": "churn", "version": 1},
        headers=auth(scene.token),
    )
    assert public.status_code == 404
    assert "key" not in public.text


async def test_changes_without_an_event_are_picked_up_after_the_ttl(scene: Scene) -> None:
    """Another process's change (its event handled there): after the TTL the stale copy still
    answers once while a fresh one loads; no request waits for the reload."""
    await scene.deployed()
    directory = scene.platform.serving.directory
    first = await directory.get(scene.slug, "churn-api")
    assert first is not None
    async with scene.platform.app.state.runtime.db.unit_of_work() as session:
        await session.execute(text("UPDATE serving_deployments SET deleted_at = now()"))
    assert await directory.get(scene.slug, "churn-api") is first  # within the TTL
    directory._ttl = 0.01  # what ARMILLARY_SERVING_DIRECTORY_TTL_SECONDS sets
    await asyncio.sleep(0.02)
    assert await directory.get(scene.slug, "churn-api") is first  # stale, reload started
    for _ in range(100):
        if await directory.get(scene.slug, "churn-api") is None:
            break
        await asyncio.sleep(0.02)
    assert await directory.get(scene.slug, "churn-api") is None
