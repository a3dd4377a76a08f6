"""Who may do what with a project's datasets: viewers read and download, editors write,
members of other projects and non-members see nothing (404); every download and delete is in
the audit log. On both storage backends."""

from __future__ import annotations

from typing import Any

import httpx
from tests.conftest import auth
from tests.integration.data.support import (
    Platform,
    Scene,
    assert_problem,
    encode,
    known_frame,
    make_scene,
)

CONTENT = encode(known_frame(), "csv")
OTHER = encode(known_frame().head(7), "csv")


async def _join(scene: Scene, user: dict[str, Any], role: str) -> None:
    response = await scene.platform.client.put(
        f"/api/v1/projects/{scene.project['slug']}/members/{user['id']}",
        json={"role": role},
        headers=auth(scene.token),
    )
    assert response.status_code == 200, response.text


async def _reads(scene: Scene, token: str, project: str, dataset: str) -> dict[str, httpx.Response]:
    c = scene.platform.client
    h = auth(token)
    base = f"/api/v1/projects/{project}/datasets"
    versions = f"{base}/{dataset}/versions"
    return {
        "list datasets": await c.get(base, headers=h),
        "get dataset": await c.get(f"{base}/{dataset}", headers=h),
        "list versions": await c.get(versions, headers=h),
        "get version": await c.get(f"{versions}/1", headers=h),
        "download": await c.get(f"{versions}/1/content", headers=h),
        "download streamed": await c.get(
            f"{versions}/1/content", params={"redirect": "false"}, headers=h
        ),
        "download link": await c.post(f"{versions}/1/content/link", headers=h),
    }


async def _writes(
    scene: Scene, token: str, project: str, dataset: str
) -> dict[str, httpx.Response]:
    c = scene.platform.client
    h = auth(token)
    base = f"/api/v1/projects/{project}/datasets"
    versions = f"{base}/{dataset}/versions"
    return {
        "upload": await c.post(
            versions, files={"file": ("other.csv", OTHER, "text/csv")}, headers=h
        ),
        "delete version": await c.delete(f"{versions}/1", headers=h),
        "update dataset": await c.patch(f"{base}/{dataset}", json={"tags": ["x"]}, headers=h),
        "delete dataset": await c.delete(f"{base}/{dataset}", headers=h),
        "create dataset": await c.post(base, json={"name": "intruder"}, headers=h),
    }


async def test_project_access_to_datasets(platform: Platform) -> None:
    api = platform.api
    scene = await make_scene(platform)
    uploaded = await scene.upload("data.csv", CONTENT)
    assert uploaded.status_code == 201, uploaded.text
    version_id = uploaded.json()["id"]
    admin = await api.admin_token()
    viewer = await api.create_user(admin, "user")
    editor = await api.create_user(admin, "data_scientist")
    outsider = await api.create_user(admin, "data_scientist")  # member of another project
    stranger = await api.create_user(admin, "user")  # member of no project
    await _join(scene, viewer, "viewer")
    await _join(scene, editor, "editor")
    await api.create_project(outsider["token"])
    before = await platform.snapshot()

    refs = [
        (scene.project["slug"], scene.dataset["name"]),
        (scene.project["id"], scene.dataset["id"]),
    ]
    for user in (outsider, stranger):
        for project, dataset in refs:
            calls = {
                **await _reads(scene, user["token"], project, dataset),
                **await _writes(scene, user["token"], project, dataset),
            }
            for case, response in calls.items():
                body = assert_problem(response, 404, f"{user['email']} {case} {project}")
                # Nothing about the dataset leaks, beyond the path the caller sent.
                leaked = response.text.replace(body.get("instance", ""), "")
                assert scene.dataset["name"] not in leaked, case
    assert await platform.snapshot() == before

    downloads = 0
    for project, dataset in refs:
        reads = await _reads(scene, viewer["token"], project, dataset)
        for case, response in reads.items():
            expected = 307 if case == "download" and platform.backend == "s3" else 200
            assert response.status_code == expected, (case, response.text)
        assert reads["download streamed"].content == CONTENT
        assert [d["name"] for d in reads["list datasets"].json()["items"]] == ["measurements"]
        downloads += 3
        writes = await _writes(scene, viewer["token"], project, dataset)
        for case, response in writes.items():
            assert_problem(response, 403, f"viewer {case}")
    assert await platform.snapshot() == before
    owner_download = await platform.client.get(
        f"{scene.versions}/1/content", params={"redirect": "false"}, headers=auth(scene.token)
    )
    assert owner_download.status_code == 200

    # An editor writes.
    added = await scene.upload("other.csv", OTHER, token=editor["token"])
    assert added.status_code == 201, added.text
    assert added.json()["number"] == 2
    deleted = await platform.client.delete(f"{scene.versions}/1", headers=auth(editor["token"]))
    assert deleted.status_code == 204, deleted.text
    # Deleted: the viewer no longer reads it either.
    gone = await platform.client.get(f"{scene.versions}/1/content", headers=auth(viewer["token"]))
    assert_problem(gone, 404, "deleted version")

    # The audit log has every download (by whom, of what, how) and the delete.
    log = await platform.client.get(
        "/api/v1/audit",
        params={"action": "datasets.download", "limit": 100},
        headers=auth(admin),
    )
    assert log.status_code == 200, log.text
    records = log.json()["items"]
    by_actor: dict[str, list[str]] = {}
    for record in records:
        assert record["resource_id"] == version_id, record
        assert record["outcome"] == "success", record
        by_actor.setdefault(record["actor_id"], []).append(record["details"]["via"])
    redirect_via = "presigned" if platform.backend == "s3" else "stream"
    assert sorted(by_actor[viewer["id"]]) == sorted([redirect_via, "stream", "link"] * 2)
    assert by_actor[scene.user["id"]] == ["stream"]
    assert set(by_actor) == {viewer["id"], scene.user["id"]}
    assert len(records) == downloads + 1

    deletes = await platform.client.get(
        "/api/v1/audit", params={"action": "datasets.version_delete"}, headers=auth(admin)
    )
    [delete] = [r for r in deletes.json()["items"] if r["outcome"] == "success"]
    assert delete["actor_id"] == editor["id"]
    assert delete["resource_id"] == version_id
    assert delete["details"] == {"dataset": "measurements", "number": 1}

    # The viewer's refused attempts are in the log as denials.
    denied = await platform.client.get(
        "/api/v1/audit",
        params={"actor": viewer["id"], "limit": 100},
        headers=auth(admin),
    )
    denials = [r for r in denied.json()["items"] if r["outcome"] == "denied"]
    assert len(denials) == 2 * 5, [r["action"] for r in denials]
