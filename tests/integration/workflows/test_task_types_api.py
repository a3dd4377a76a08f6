"""GET /api/v1/task-types and the spec schema route publish the allowed estimators (an enum)
with their hyperparameters; applying a misspelt spec answers "did you mean ...?"."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, auth

from armillary.contracts.training import ESTIMATORS


async def test_task_types_list_the_estimators_and_their_hyperparameters(api: Api) -> None:
    admin = await api.admin_token()
    listed = await api.client.get("/api/v1/task-types", headers=auth(admin))
    assert listed.status_code == 200, listed.text
    train = {t["name"]: t for t in listed.json()}["train"]["params_schema"]
    assert train["properties"]["estimator"]["enum"] == sorted(ESTIMATORS)
    rules = {r["if"]["properties"]["estimator"]["const"]: r["then"] for r in train["allOf"]}
    svc = rules["SVC"]["properties"]["hyperparameters"]["properties"]
    assert svc["C"] == {"type": "number", "exclusiveMinimum": 0.0, "default": 1.0}


async def test_the_spec_schema_lists_task_types_and_estimators(api: Api) -> None:
    admin = await api.admin_token()
    response = await api.client.get("/api/v1/workflow-spec/schema", headers=auth(admin))
    assert response.status_code == 200, response.text
    defs = response.json()["$defs"]
    assert "train" in defs["TaskSpec"]["properties"]["type"]["enum"]
    estimator = defs["train.params"]["properties"]["estimator"]["anyOf"][0]
    assert estimator["enum"] == sorted(ESTIMATORS)


async def test_applying_a_misspelt_spec_suggests_the_name(api: Api) -> None:
    admin = await api.admin_token()
    project = await api.create_project(admin)
    spec: dict[str, Any] = {
        "name": "fit",
        "tasks": [
            {"name": "load", "type": "noop", "outputs": ["rows"]},
            {
                "name": "train",
                "type": "train",
                "needs": ["load"],
                "params": {"input": "load", "target": "y", "estimator": "RandomForestClasifier"},
            },
            {"name": "wait", "type": "slep", "params": {"seconds": 1}},
        ],
    }
    response = await api.client.post(
        f"/api/v1/projects/{project['slug']}/workflows", json=spec, headers=auth(admin)
    )
    assert response.status_code == 422, response.text
    messages = {e["path"]: e["message"] for e in response.json()["errors"]}
    assert "did you mean 'RandomForestClassifier'?" in messages["tasks[1].params"]
    assert "did you mean 'sleep'?" in messages["tasks[2].type"]
