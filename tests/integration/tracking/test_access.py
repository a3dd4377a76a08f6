"""Who reaches a project's runs: members by role; anyone else finds nothing, by id or name."""

from __future__ import annotations

import pytest
from tests.conftest import Api, auth
from tests.integration.tracking.support import Mlflow, assert_error, editor_in_new_project

# Access is the same code and queries on both databases: PostgreSQL alone (the rest of the
# tracking tests run on SQLite too).
pytestmark = pytest.mark.parametrize("backend_settings", ["postgresql"], indirect=True)


@pytest.fixture
async def scene(mlflow: Mlflow, platform_api: Api) -> dict[str, str]:
    experiment = await mlflow.experiment("private")
    run_id = (await mlflow.run(experiment))["info"]["run_id"]
    await mlflow.ok(
        "POST",
        "runs/log-batch",
        {"run_id": run_id, "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 0}]},
    )
    return {"experiment": experiment, "run": run_id}


async def test_another_projects_token_finds_nothing(
    mlflow: Mlflow, platform_api: Api, scene: dict[str, str]
) -> None:
    other_token, other_project = await editor_in_new_project(platform_api)
    outsider = mlflow.as_user(other_token)
    experiment, run_id = scene["experiment"], scene["run"]
    # Through the owner's project URL: not a member, so the project itself is not there.
    for response in (
        await outsider.get("experiments/get", {"experiment_id": experiment}),
        await outsider.get("experiments/get-by-name", {"experiment_name": "private"}),
        await outsider.get("runs/get", {"run_id": run_id}),
        await outsider.get("metrics/get-history", {"run_id": run_id, "metric_key": "m"}),
        await outsider.post("runs/log-parameter", {"run_id": run_id, "key": "k", "value": "v"}),
        await outsider.post("experiments/delete", {"experiment_id": experiment}),
    ):
        assert_error(response, 404, "RESOURCE_DOES_NOT_EXIST")
    # Through their own project URL, with the ids and the name of the other project's objects.
    own = Mlflow(mlflow.client, other_project, other_token)
    for response in (
        await own.get("experiments/get", {"experiment_id": experiment}),
        await own.get("experiments/get-by-name", {"experiment_name": "private"}),
        await own.get("runs/get", {"run_id": run_id}),
        await own.get("metrics/get-history", {"run_id": run_id, "metric_key": "m"}),
        await own.post("runs/set-tag", {"run_id": run_id, "key": "k", "value": "v"}),
        await own.post("runs/delete", {"run_id": run_id}),
        await own.post("runs/create", {"experiment_id": experiment}),
    ):
        assert_error(response, 404, "RESOURCE_DOES_NOT_EXIST")
    searched = await own.ok("POST", "runs/search", {"experiment_ids": [experiment]})
    assert searched.get("runs", []) == []
    # And nothing of theirs changed.
    run = (await mlflow.ok("GET", "runs/get", {"run_id": run_id}))["run"]
    assert run["info"]["lifecycle_stage"] == "active"
    assert run["data"]["params"] == []


async def test_viewers_read_editors_write_strangers_authenticate(
    mlflow: Mlflow, platform_api: Api, scene: dict[str, str]
) -> None:
    admin = await platform_api.admin_token()
    viewer = await platform_api.create_user(admin, "user")
    added = await platform_api.client.put(
        f"/api/v1/projects/{mlflow.project}/members/{viewer['email']}",
        json={"role": "viewer"},
        headers=auth(mlflow.token),
    )
    assert added.status_code == 200, added.text
    reader = mlflow.as_user(viewer["token"])
    await reader.ok("GET", "runs/get", {"run_id": scene["run"]})
    await reader.ok("POST", "runs/search", {"experiment_ids": [scene["experiment"]]})
    refused = await reader.post("runs/set-tag", {"run_id": scene["run"], "key": "k", "value": "v"})
    assert_error(refused, 403, "PERMISSION_DENIED")
    assert_error(await reader.post("experiments/create", {"name": "x"}), 403, "PERMISSION_DENIED")

    anonymous = await mlflow.client.get(mlflow.url("runs/get"), params={"run_id": scene["run"]})
    assert_error(anonymous, 401, "UNAUTHENTICATED")
