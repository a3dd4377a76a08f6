"""F11: one job registering the same artifacts twice (a retried register task, a task that
calls it twice) got two model versions. The same job, task and artifact digests now get the
version the first call created; another job still gets a new one."""

from __future__ import annotations

from sqlalchemy import text
from tests.conftest import auth
from tests.integration.registry.support import (
    Scene,
    training_job,
    version_body,
    with_datasets,
)


async def _versions(scene: Scene) -> int:
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        return int(await session.scalar(text("SELECT count(*) FROM registry_model_versions")) or 0)


async def _outbox_registrations(scene: Scene) -> int:
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        found = await session.scalar(
            text("SELECT count(*) FROM outbox_events WHERE type = :t"),
            {"t": "registry.model_version_registered"},
        )
        return int(found or 0)


async def test_registering_the_same_artifacts_twice_gives_the_same_version(scene: Scene) -> None:
    await with_datasets(scene)
    _, token = await training_job(scene)
    url = f"{scene.model_base}/versions"

    first = await scene.client.post(url, json=version_body(), headers=auth(token))
    assert first.status_code == 201, first.text
    again = await scene.client.post(url, json=version_body(), headers=auth(token))
    assert again.status_code == 201, again.text

    assert again.json()["id"] == first.json()["id"]
    assert again.json()["version"] == first.json()["version"] == 1
    assert await _versions(scene) == 1
    assert await _outbox_registrations(scene) == 1  # one event, nothing announced twice


async def test_another_job_with_the_same_bytes_registers_a_new_version(scene: Scene) -> None:
    await with_datasets(scene)
    url = f"{scene.model_base}/versions"
    _, token = await training_job(scene)
    first = await scene.client.post(url, json=version_body(), headers=auth(token))
    assert first.status_code == 201, first.text

    # Another job with the very same bytes: a version of its own.
    _, other_job = await training_job(scene)
    second = await scene.client.post(url, json=version_body(), headers=auth(other_job))
    assert second.status_code == 201, second.text
    assert second.json()["version"] == 2

    assert await _versions(scene) == 2
