"""Workflows over HTTP: apply (JSON or YAML), versions, access, task types and the schema."""

from __future__ import annotations

import json
from typing import Any

import yaml
from tests.conftest import Api, auth

SPEC: dict[str, Any] = {
    "name": "nightly",
    "description": "diamond",
    "parameters": {"n": 2},
    "schedule": {"cron": "0 2 * * *"},
    "tasks": [
        {"name": "a", "type": "sleep", "params": {"seconds": "${params.n}"}},
        {"name": "b", "type": "noop", "needs": ["a"], "outputs": ["x"]},
        {"name": "c", "type": "noop", "needs": ["a"]},
        {
            "name": "d",
            "type": "noop",
            "params": {"values": {"x": "${tasks.b.outputs.x}"}},
            "needs": ["b", "c"],
        },
    ],
}
YAML = {"Content-Type": "application/yaml"}


async def editor_project(api: Api) -> tuple[str, str, str]:
    """(admin token, editor token, workflows URL)."""
    admin = await api.admin_token()
    editor = await api.create_user(admin, "data_scientist")
    project = await api.create_project(editor["token"])
    return admin, editor["token"], f"/api/v1/projects/{project['slug']}/workflows"


async def test_json_and_yaml_apply_and_versions(api: Api) -> None:
    _admin, token, base = await editor_project(api)
    created = await api.client.post(base, json=SPEC, headers=auth(token))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["created"] is True
    assert body["version"]["number"] == 1
    assert body["workflow"]["latest_version"] == 1
    assert body["workflow"]["schedule"] == {
        "cron": "0 2 * * *",
        "catchup": "skip",
        "max_catchup_runs": 10,
    }
    assert created.headers["Location"].endswith("/workflows/nightly/versions/1")
    sha = body["version"]["spec_sha256"]

    # The same spec as YAML, keys reordered and defaults spelled out: unchanged.
    same = dict(reversed(list(SPEC.items())))
    same["tasks"] = [{**SPEC["tasks"][0], "retries": 0, "cache": False}, *SPEC["tasks"][1:]]
    again = await api.client.post(
        base, content=yaml.safe_dump(same), headers={**auth(token), **YAML}
    )
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["version"]["number"] == 1
    assert again.json()["version"]["spec_sha256"] == sha

    changed = {**SPEC, "description": "diamond, v2"}
    second = await api.client.post(
        base, content=yaml.safe_dump(changed), headers={**auth(token), **YAML}
    )
    assert second.status_code == 201, second.text
    assert second.json()["version"]["number"] == 2
    assert second.json()["version"]["spec_sha256"] != sha

    versions = await api.client.get(f"{base}/nightly/versions", headers=auth(token))
    assert [v["number"] for v in versions.json()["items"]] == [2, 1]
    v1 = await api.client.get(f"{base}/nightly/versions/1", headers=auth(token))
    assert v1.status_code == 200
    assert v1.json()["spec"]["description"] == "diamond"
    assert v1.json()["spec"]["tasks"][3]["params"]["values"]["x"] == "${tasks.b.outputs.x}"
    missing = await api.client.get(f"{base}/nightly/versions/3", headers=auth(token))
    assert missing.status_code == 404

    listed = await api.client.get(base, headers=auth(token))
    assert listed.json()["total"] == 1
    assert listed.json()["items"][0]["latest_version"] == 2
    by_id = await api.client.get(f"{base}/{listed.json()['items'][0]['id']}", headers=auth(token))
    assert by_id.json()["description"] == "diamond, v2"


async def test_an_invalid_spec_gets_every_error(api: Api) -> None:
    _admin, token, base = await editor_project(api)
    bad = json.loads(json.dumps(SPEC))
    bad["schedule"]["cron"] = "whenever"
    bad["tasks"][2]["needs"] = ["a", "ghost"]
    bad["tasks"][3]["params"]["values"]["x"] = "${tasks.b.outputs.y}"
    response = await api.client.post(base, json=bad, headers=auth(token))
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = {(e["path"], e["kind"]) for e in response.json()["errors"]}
    assert errors == {
        ("schedule.cron", "invalid_cron"),
        ("tasks[2].needs[1]", "missing_dependency"),
        ("tasks[3].params.values.x", "unknown_output"),
    }
    assert (await api.client.get(base, headers=auth(token))).json()["total"] == 0


async def test_unreadable_and_unsupported_bodies(api: Api) -> None:
    _admin, token, base = await editor_project(api)
    broken = await api.client.post(base, content=b"tasks: [", headers={**auth(token), **YAML})
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["kind"] == "syntax"
    other = await api.client.post(
        base, content=b"x", headers={**auth(token), "Content-Type": "text/csv"}
    )
    assert other.status_code == 415


async def test_viewers_read_editors_write_outsiders_see_nothing(api: Api) -> None:
    admin, token, base = await editor_project(api)
    project = base.split("/")[4]
    viewer = await api.create_user(admin, "user")
    outsider = await api.create_user(admin, "data_scientist")
    added = await api.client.put(
        f"/api/v1/projects/{project}/members/{viewer['id']}",
        json={"role": "viewer"},
        headers=auth(token),
    )
    assert added.status_code in (200, 201), added.text
    assert (await api.client.post(base, json=SPEC, headers=auth(token))).status_code == 201

    denied = await api.client.post(base, json=SPEC, headers=auth(viewer["token"]))
    assert denied.status_code == 403
    assert (await api.client.get(f"{base}/nightly", headers=auth(viewer["token"]))).is_success
    delete = await api.client.delete(f"{base}/nightly", headers=auth(viewer["token"]))
    assert delete.status_code == 403

    for method, url in [("GET", base), ("GET", f"{base}/nightly"), ("POST", base)]:
        response = await api.client.request(method, url, json=SPEC, headers=auth(outsider["token"]))
        assert response.status_code == 404, (method, url, response.status_code)


async def test_soft_delete_hides_the_workflow_and_frees_its_name(api: Api) -> None:
    _admin, token, base = await editor_project(api)
    assert (await api.client.post(base, json=SPEC, headers=auth(token))).status_code == 201
    deleted = await api.client.delete(f"{base}/nightly", headers=auth(token))
    assert deleted.status_code == 204
    assert (await api.client.get(f"{base}/nightly", headers=auth(token))).status_code == 404
    assert (await api.client.get(base, headers=auth(token))).json()["total"] == 0
    fresh = await api.client.post(base, json=SPEC, headers=auth(token))
    assert fresh.status_code == 201
    assert fresh.json()["version"]["number"] == 1


async def test_writes_are_audited(api: Api) -> None:
    admin, token, base = await editor_project(api)
    await api.client.post(base, json=SPEC, headers=auth(token))
    await api.client.post(base, json=SPEC, headers=auth(token))
    await api.client.delete(f"{base}/nightly", headers=auth(token))
    response = await api.client.get("/api/v1/audit", headers=auth(admin))
    assert response.status_code == 200, response.text
    actions = [e["action"] for e in response.json()["items"]]
    for action in [
        "workflows.create",
        "workflows.version_create",
        "workflows.apply_unchanged",
        "workflows.delete",
    ]:
        assert action in actions


async def test_task_types_and_spec_schema(api: Api) -> None:
    admin = await api.admin_token()
    user = await api.create_user(admin, "user")
    assert (await api.client.get("/api/v1/task-types")).status_code == 401
    assert (await api.client.get("/api/v1/workflow-spec/schema")).status_code == 401

    listed = await api.client.get("/api/v1/task-types", headers=auth(user["token"]))
    assert listed.status_code == 200
    types = {t["name"]: t for t in listed.json()}
    assert {"python", "noop", "sleep", "fail"} <= set(types)
    assert types["sleep"]["params_schema"]["required"] == ["seconds"]
    assert "seconds" in types["sleep"]["outputs_schema"]["properties"]
    assert set(types["python"]["params_schema"]["properties"]) == {
        "source",
        "bundle",
        "entrypoint",
        "args",
        "reads",
        "writes",
    }
    assert types["python"]["dynamic_outputs"] is True
    assert types["fail"]["params_schema"]["additionalProperties"] is False

    schema = await api.client.get("/api/v1/workflow-spec/schema", headers=auth(user["token"]))
    assert schema.status_code == 200
    body = schema.json()
    assert set(body["required"]) == {"name", "tasks"}
    assert {"schedule", "parameters", "tasks"} <= set(body["properties"])
