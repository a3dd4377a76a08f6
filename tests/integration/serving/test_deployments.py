"""Deployments over HTTP: create, read, reconfigure (canary), roll back, history, delete; every
change a new configuration version, audited, with a ``serving.deployment_changed`` event."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from tests.conftest import auth
from tests.integration.serving.support import CHAMPION_CHALLENGER, Scene, assert_problem, variants


async def _rows(scene: Scene, sql: str, **params: Any) -> list[Any]:
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        return list((await session.execute(text(sql), params)).all())


async def _events(scene: Scene, deployment_id: str) -> list[dict[str, Any]]:
    rows = await _rows(
        scene,
        "SELECT payload FROM outbox_events WHERE type = 'serving.deployment_changed' "
        "ORDER BY created_at",
    )
    return [r.payload for r in rows if r.payload["deployment_id"] == deployment_id]


async def _audit_actions(scene: Scene, deployment_id: str) -> list[str]:
    rows = await _rows(
        scene, "SELECT payload FROM outbox_events WHERE type = 'audit.entry' ORDER BY created_at"
    )
    return [
        r.payload["action"]
        for r in rows
        if r.payload["resource_id"] == deployment_id and r.payload["service"] == "serving"
    ]


async def test_create_then_read_resolves_every_variant(scene: Scene) -> None:
    created = await scene.deployed()
    assert created["name"] == "churn-api"
    assert created["project"] == scene.slug
    assert created["config_version"] == 1
    assert created["routing"] == {"mode": "sticky"}
    assert created["policy"]["auto_rollback"]["enabled"] is False
    by_name = {v["name"]: v for v in created["variants"]}
    assert by_name["champion"]["alias"] == "champion"
    assert by_name["champion"]["resolved"]["model_version"] == 1
    assert by_name["challenger"]["resolved"]["model_version"] == 2

    read = await scene.client.get(f"{scene.base}/churn-api", headers=auth(scene.token))
    assert read.status_code == 200, read.text
    assert read.json()["variants"] == created["variants"]
    by_id = await scene.client.get(f"{scene.base}/{created['id']}", headers=auth(scene.token))
    assert by_id.json()["name"] == "churn-api"

    listed = await scene.client.get(scene.base, headers=auth(scene.token))
    assert listed.json()["total"] == 1
    assert listed.json()["items"][0]["variants"] == created["variants"]

    assert await _events(scene, created["id"]) == [
        {
            "project_id": scene.project["id"],
            "deployment_id": created["id"],
            "name": "churn-api",
            "config_version": 1,
        }
    ]
    assert await _audit_actions(scene, created["id"]) == ["deployments.create"]


async def test_a_name_is_unique_per_project(scene: Scene) -> None:
    await scene.deployed()
    assert_problem(await scene.deploy(), 409)


async def test_updates_are_numbered_versions_and_rollback_walks_back(scene: Scene) -> None:
    created = await scene.deployed()
    url = f"{scene.base}/churn-api"
    # A canary: 90/10, then 50/50, then 0/100.
    for version, (a, b) in enumerate(((50, 50), (0, 100)), start=2):
        body = {
            "variants": variants(
                ("champion", {"alias": "champion", "weight": a}),
                ("challenger", {"version": 2, "weight": b}),
            ),
            "reason": f"canary step {version}",
        }
        updated = await scene.client.put(url, json=body, headers=auth(scene.token))
        assert updated.status_code == 200, updated.text
        assert updated.json()["config_version"] == version
        assert [v["weight"] for v in updated.json()["variants"]] == [a, b]
        # Routing and policy stay when left out.
        assert updated.json()["routing"] == {"mode": "sticky"}

    back = await scene.client.post(
        f"{url}/rollback", json={"reason": "challenger too slow"}, headers=auth(scene.token)
    )
    assert back.status_code == 200, back.text
    assert back.json()["config_version"] == 4
    assert [v["weight"] for v in back.json()["variants"]] == [50, 50]
    back = await scene.client.post(f"{url}/rollback", json={}, headers=auth(scene.token))
    assert back.json()["config_version"] == 5
    assert [v["weight"] for v in back.json()["variants"]] == [90, 10]
    # Nothing before the first configuration.
    assert_problem(
        await scene.client.post(f"{url}/rollback", json={}, headers=auth(scene.token)), 409
    )

    history = await scene.client.get(f"{url}/configs", headers=auth(scene.token))
    assert history.status_code == 200, history.text
    items = history.json()["items"]
    assert [(c["version"], c["kind"], c["restored_version"]) for c in items] == [
        (5, "rollback", 1),
        (4, "rollback", 2),
        (3, "update", None),
        (2, "update", None),
        (1, "create", None),
    ]
    assert items[1]["reason"] == "challenger too slow"
    assert {c["created_by"] for c in items} == {scene.user["id"]}
    assert items[4]["variants"] == [
        {**v, "version": v.get("version"), "alias": v.get("alias"), "shadow": False}
        for v in CHAMPION_CHALLENGER
    ]

    assert [e["config_version"] for e in await _events(scene, created["id"])] == [1, 2, 3, 4, 5]
    assert await _audit_actions(scene, created["id"]) == [
        "deployments.create",
        "deployments.update",
        "deployments.update",
        "deployments.rollback",
        "deployments.rollback",
    ]


async def test_configurations_are_immutable_rows(scene: Scene) -> None:
    created = await scene.deployed()
    body = {"variants": variants(("only", {"version": 1, "weight": 1})), "reason": "simplify"}
    await scene.client.put(f"{scene.base}/churn-api", json=body, headers=auth(scene.token))
    rows = await _rows(
        scene,
        "SELECT version, variants FROM serving_deployment_configs WHERE deployment_id = :d "
        "ORDER BY version",
        d=uuid.UUID(created["id"]),
    )
    assert [r.version for r in rows] == [1, 2]
    assert [v["name"] for v in rows[0].variants] == ["champion", "challenger"]
    assert [v["name"] for v in rows[1].variants] == ["only"]


async def test_delete_is_soft_and_frees_the_name(scene: Scene) -> None:
    created = await scene.deployed()
    url = f"{scene.base}/churn-api"
    deleted = await scene.client.delete(url, headers=auth(scene.token))
    assert deleted.status_code == 204, deleted.text
    assert_problem(await scene.client.get(url, headers=auth(scene.token)), 404)
    assert (await scene.client.get(scene.base, headers=auth(scene.token))).json()["total"] == 0
    assert (await _events(scene, created["id"]))[-1]["config_version"] == 0
    assert (await _audit_actions(scene, created["id"]))[-1] == "deployments.delete"
    rows = await _rows(
        scene,
        "SELECT deleted_at FROM serving_deployments WHERE id = :d",
        d=uuid.UUID(created["id"]),
    )
    assert rows[0].deleted_at is not None
    again = await scene.deployed()
    assert again["id"] != created["id"]
    assert await scene.platform.serving.directory.get(scene.slug, created["id"]) is None


async def _refused(scene: Scene, body_variants: list[dict[str, Any]], fragment: str) -> None:
    response = await scene.deploy(variants=body_variants)
    problem = assert_problem(response, 422)
    assert fragment in problem["detail"], problem


async def test_invalid_variants_are_refused_with_a_reason(scene: Scene) -> None:
    await _refused(
        scene,
        variants(("a", {"version": 1, "weight": 1}), ("a", {"version": 2, "weight": 1})),
        "unique",
    )
    await _refused(
        scene, variants(("a", {"version": 1, "alias": "champion", "weight": 1})), "exactly one"
    )
    await _refused(scene, variants(("a", {"weight": 1})), "exactly one")
    await _refused(
        scene,
        variants(
            ("a", {"version": 1, "weight": 1}),
            ("s1", {"version": 1, "weight": 0, "shadow": True}),
            ("s2", {"version": 2, "weight": 0, "shadow": True}),
        ),
        "At most one shadow",
    )
    await _refused(
        scene,
        variants(
            ("a", {"version": 1, "weight": 0}), ("s", {"version": 2, "weight": 5, "shadow": True})
        ),
        "weight above 0",
    )
    await _refused(scene, variants(("a", {"version": 9, "weight": 1})), "has no version 9")
    await _refused(
        scene, variants(("a", {"alias": "nowhere", "weight": 1})), "has no alias 'nowhere'"
    )
    await _refused(
        scene, [{"name": "a", "model": "ghost", "version": 1, "weight": 1}], "model 'ghost'"
    )
    # Shapes: the schema's own 422.
    for bad in (
        variants(("Upper", {"version": 1, "weight": 1})),
        variants(("a", {"version": 1, "weight": -1})),
        variants(("a", {"version": 1, "weight": 1, "extra": True})),
        [],
    ):
        assert_problem(await scene.deploy(variants=bad), 422)
    assert_problem(await scene.deploy(name="../etc"), 422)
    assert (await scene.client.get(scene.base, headers=auth(scene.token))).json()["total"] == 0


async def test_an_update_is_validated_like_a_creation(scene: Scene) -> None:
    await scene.deployed()
    body = {"variants": variants(("a", {"version": 7, "weight": 1})), "reason": "typo"}
    response = await scene.client.put(
        f"{scene.base}/churn-api", json=body, headers=auth(scene.token)
    )
    assert "has no version 7" in assert_problem(response, 422)["detail"]
    read = await scene.client.get(f"{scene.base}/churn-api", headers=auth(scene.token))
    assert read.json()["config_version"] == 1


async def test_another_projects_models_cannot_be_deployed(scene: Scene) -> None:
    other = await scene.platform.api.create_project(scene.token)
    models = f"/api/v1/projects/{other['slug']}/models"
    await scene.client.post(models, json={"name": "secret"}, headers=auth(scene.token))
    response = await scene.deploy(
        variants=[{"name": "a", "model": "secret", "version": 1, "weight": 1}]
    )
    assert "model 'secret'" in assert_problem(response, 422)["detail"]


async def test_a_deleted_project_takes_its_deployments(scene: Scene) -> None:
    created = await scene.deployed()
    response = await scene.client.delete(
        f"/api/v1/projects/{scene.slug}", headers=auth(scene.token)
    )
    assert response.status_code == 204, response.text
    rows = await _rows(
        scene,
        "SELECT deleted_at FROM serving_deployments WHERE id = :d",
        d=uuid.UUID(created["id"]),
    )
    assert rows[0].deleted_at is not None
    assert await scene.platform.serving.directory.get(scene.slug, "churn-api") is None
