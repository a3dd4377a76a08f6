"""Dataset holds: the registry's ``ModelVersionRegistered`` event (published through the outbox
the way the registry does) makes each dataset version it used held; a held version, or a
dataset with one, is not deleted (409 naming the holders) unless a platform admin forces it,
and the forced deletion is audited with the holds."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.conftest import auth
from tests.integration.data.support import (
    Platform,
    Scene,
    assert_problem,
    encode,
    known_frame,
    make_scene,
)

from armillary.contracts.events import AuditEntry
from armillary.contracts.registry import DatasetVersionUsed, ModelVersionRegistered
from armillary.data.holds.models import DatasetHold
from armillary.kit.db import utcnow
from armillary.kit.events import OutboxEvent, publish

V1 = encode(known_frame(), "csv")
V2 = encode(known_frame().head(10), "csv")


@pytest.fixture
def backend() -> str:
    return "local"


async def scene_with_versions(platform: Platform) -> Scene:
    scene = await make_scene(platform)
    for name, content in (("v1.csv", V1), ("v2.csv", V2)):
        response = await scene.upload(name, content)
        assert response.status_code == 201, response.text
    return scene


async def version(scene: Scene, number: int) -> dict[str, Any]:
    response = await scene.platform.client.get(
        f"{scene.versions}/{number}", headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def registered(
    scene: Scene,
    used: list[dict[str, Any]],
    *,
    model: str = "churn",
    number: int = 3,
    model_version_id: uuid.UUID | None = None,
    project_id: str | None = None,
) -> ModelVersionRegistered:
    return ModelVersionRegistered(
        project_id=uuid.UUID(project_id or scene.project["id"]),
        model_id=uuid.uuid5(uuid.NAMESPACE_URL, model),
        model=model,
        model_version_id=model_version_id or uuid.uuid4(),
        version=number,
        datasets=[
            DatasetVersionUsed(
                dataset_id=uuid.UUID(v["dataset_id"]),
                dataset=v["dataset"],
                version=v["number"],
                sha256=v["sha256"],
            )
            for v in used
        ],
        occurred_at=utcnow(),
    )


def used(scene: Scene, record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "dataset_id": scene.dataset["id"]}


async def emit(platform: Platform, event: ModelVersionRegistered) -> uuid.UUID:
    """As the registry does: into the outbox in its unit of work; the bus delivers it after
    the commit."""
    async with platform.app.state.runtime.db.unit_of_work() as session:
        return publish(session, ModelVersionRegistered.TYPE, event)


async def hold_rows(platform: Platform) -> int:
    async with platform.app.state.runtime.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(DatasetHold)) or 0)


async def audited(platform: Platform, action: str) -> list[dict[str, Any]]:
    async with platform.app.state.runtime.db.sessionmaker() as session:
        rows = await session.scalars(select(OutboxEvent).where(OutboxEvent.type == AuditEntry.TYPE))
        return [row.payload for row in rows if row.payload["action"] == action]


async def test_a_registration_holds_the_versions_it_used_once(platform: Platform) -> None:
    scene = await scene_with_versions(platform)
    v1 = used(scene, await version(scene, 1))
    assert v1["holds"] == []
    event = registered(scene, [v1, v1])  # named twice: still one hold
    event_id = await emit(platform, event)

    shown = await version(scene, 1)
    assert shown["holds"] == [
        {"model": "churn", "version": 3, "model_version_id": str(event.model_version_id)}
    ]
    assert (await version(scene, 2))["holds"] == []
    assert await hold_rows(platform) == 1

    # Redelivered (a relay after a crash): the consumer recorded the event, nothing is added.
    runtime = platform.app.state.runtime
    async with runtime.db.sessionmaker() as session:
        row = await session.get(OutboxEvent, event_id)
    assert row is not None
    assert row.published_at is not None
    assert await runtime.bus.deliver(row)
    # The same registration published again as a new event: still the one hold.
    await emit(platform, event)
    assert await hold_rows(platform) == 1

    # Another model version on both versions: holds add up, per version.
    other = registered(scene, [v1, used(scene, await version(scene, 2))], model="fraud", number=1)
    await emit(platform, other)
    assert [h["model"] for h in (await version(scene, 1))["holds"]] == ["churn", "fraud"]
    assert [h["model"] for h in (await version(scene, 2))["holds"]] == ["fraud"]


async def test_events_never_hold_across_projects_or_unknown_versions(platform: Platform) -> None:
    scene = await scene_with_versions(platform)
    other = await make_scene(platform, "elsewhere")
    v1 = used(scene, await version(scene, 1))

    # Naming this project's dataset under another project id; an unknown version number; an
    # unknown dataset.
    ids = [
        await emit(platform, registered(scene, [v1], project_id=other.project["id"])),
        await emit(platform, registered(scene, [{**v1, "number": 9}])),
        await emit(platform, registered(scene, [{**v1, "dataset_id": str(uuid.uuid4())}])),
    ]
    assert await hold_rows(platform) == 0
    assert (await version(scene, 1))["holds"] == []
    async with platform.app.state.runtime.db.sessionmaker() as session:
        rows = await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))
        # Handled (not failing and redelivered forever).
        assert all(row.published_at is not None for row in rows)


async def test_a_held_version_is_deleted_only_when_an_admin_forces_it(
    platform: Platform,
) -> None:
    scene = await scene_with_versions(platform)
    event = registered(scene, [used(scene, await version(scene, 1))])
    await emit(platform, event)
    client = platform.client
    admin = await platform.api.admin_token()

    refused = await client.delete(f"{scene.versions}/1", headers=auth(scene.token))
    body = assert_problem(refused, 409)
    assert "churn v3" in body["detail"]
    assert "force=true" in body["detail"]
    assert body["holds"] == [
        {"model": "churn", "version": 3, "model_version_id": str(event.model_version_id)}
    ]
    assert (await version(scene, 1))["deleted"] is False

    # An unheld version goes as before.
    assert (await client.delete(f"{scene.versions}/2", headers=auth(scene.token))).status_code == (
        204
    )
    # Forcing is for platform admins only: not the project's owner.
    not_admin = await client.delete(
        f"{scene.versions}/1", params={"force": "true"}, headers=auth(scene.token)
    )
    assert_problem(not_admin, 403)
    assert (await version(scene, 1))["deleted"] is False
    # The admin without force is refused too.
    assert_problem(await client.delete(f"{scene.versions}/1", headers=auth(admin)), 409)

    forced = await client.delete(
        f"{scene.versions}/1", params={"force": "true"}, headers=auth(admin)
    )
    assert forced.status_code == 204, forced.text
    gone = await client.get(f"{scene.versions}/1", headers=auth(scene.token))
    assert gone.status_code == 404

    entries = await audited(platform, "datasets.version_delete")
    by_number = {e["details"]["number"]: e for e in entries if e["outcome"] == "success"}
    assert by_number[2]["details"] == {"dataset": "measurements", "number": 2}
    assert by_number[1]["details"]["forced"] is True
    assert by_number[1]["details"]["holds"] == body["holds"]


async def test_a_dataset_with_a_held_version_is_deleted_only_when_forced(
    platform: Platform,
) -> None:
    scene = await scene_with_versions(platform)
    event = registered(scene, [used(scene, await version(scene, 2))], model="churn", number=7)
    await emit(platform, event)
    client = platform.client
    admin = await platform.api.admin_token()
    dataset_url = f"{scene.base}/{scene.dataset['name']}"

    refused = await client.delete(dataset_url, headers=auth(scene.token))
    body = assert_problem(refused, 409)
    assert "churn v7" in body["detail"]
    assert body["holds"] == [
        {
            "model": "churn",
            "version": 7,
            "model_version_id": str(event.model_version_id),
            "dataset_version": 2,
        }
    ]
    assert_problem(
        await client.delete(dataset_url, params={"force": "true"}, headers=auth(scene.token)), 403
    )
    assert (await client.get(dataset_url, headers=auth(scene.token))).status_code == 200

    forced = await client.delete(dataset_url, params={"force": "true"}, headers=auth(admin))
    assert forced.status_code == 204, forced.text
    assert (await client.get(dataset_url, headers=auth(scene.token))).status_code == 404
    (entry,) = [e for e in await audited(platform, "datasets.delete") if e["outcome"] == "success"]
    assert entry["details"]["forced"] is True
    assert entry["details"]["holds"] == body["holds"]


async def test_holds_on_deleted_versions_do_not_block_the_dataset(platform: Platform) -> None:
    scene = await scene_with_versions(platform)
    await emit(platform, registered(scene, [used(scene, await version(scene, 1))]))
    admin = await platform.api.admin_token()
    client = platform.client
    forced = await client.delete(
        f"{scene.versions}/1", params={"force": "true"}, headers=auth(admin)
    )
    assert forced.status_code == 204
    dataset_url = f"{scene.base}/{scene.dataset['name']}"
    deleted = await client.delete(dataset_url, headers=auth(scene.token))
    assert deleted.status_code == 204, deleted.text


async def test_an_admins_job_token_cannot_force(platform: Platform) -> None:
    scene = await scene_with_versions(platform)
    await emit(platform, registered(scene, [used(scene, await version(scene, 1))]))
    admin = await platform.api.admin_token()
    me = (await platform.client.get("/api/v1/auth/me", headers=auth(admin))).json()
    issued = await platform.app.state.runtime.access.directory.issue_job_token(
        user_id=uuid.UUID(me["id"]),
        project_id=uuid.UUID(scene.project["id"]),
        job_id=uuid.uuid4(),
        ttl_seconds=300,
    )
    response = await platform.client.delete(
        f"{scene.versions}/1", params={"force": "true"}, headers=auth(str(issued.token))
    )
    assert_problem(response, 403)
    assert (await version(scene, 1))["deleted"] is False
