"""MLflow's registry API over Armillary's registry: registered models, versions made from a
run's logged model (safe flavours only), aliases with their history, searches, isolation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Api, auth
from tests.integration.tracking.model_files import (
    IRIS_COLUMNS,
    marker_pickle,
    mlmodel,
    onnx_bytes,
    skops_bytes,
)
from tests.integration.tracking.support import Mlflow, assert_error, editor_in_new_project


async def put_artifact(mlflow: Mlflow, run: dict[str, Any], path: str, data: bytes) -> None:
    proxied = run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")
    response = await mlflow.client.put(
        f"/mlflow/{mlflow.project}/api/2.0/mlflow-artifacts/artifacts/{proxied}/{path}",
        content=data,
        headers=auth(mlflow.token),
    )
    assert response.status_code == 200, response.text


async def logged_run(
    mlflow: Mlflow, flavour: str = "skops", model: bytes | None = None, file: str = "model.skops"
) -> dict[str, Any]:
    """A run with a metric history, params, and a model logged under ``model/``."""
    experiment = await mlflow.experiment(f"iris-{flavour}")
    run = await mlflow.run(experiment, run_name="iris-lr")
    run_id = run["info"]["run_id"]
    await mlflow.ok(
        "POST",
        "runs/log-batch",
        {
            "run_id": run_id,
            "metrics": [
                {"key": "accuracy", "value": 0.9, "timestamp": 1, "step": 0},
                {"key": "accuracy", "value": 0.97, "timestamp": 2, "step": 1},
                {"key": "val/loss", "value": 0.1, "timestamp": 2, "step": 1},
            ],
            "params": [{"key": "C", "value": "1.0"}, {"key": "max_iter", "value": "500"}],
        },
    )
    await put_artifact(mlflow, run, "model/MLmodel", mlmodel(flavour, file))
    await put_artifact(mlflow, run, f"model/{file}", skops_bytes() if model is None else model)
    return run


async def armillary(mlflow: Mlflow, path: str) -> httpx.Response:
    return await mlflow.client.get(
        f"/api/v1/projects/{mlflow.project}/models/{path}", headers=auth(mlflow.token)
    )


async def register(mlflow: Mlflow, name: str, source: str, run_id: str) -> httpx.Response:
    return await mlflow.post(
        "model-versions/create", {"name": name, "source": source, "run_id": run_id}
    )


async def test_a_runs_model_registered_aliased_searched_and_served_by_uri(mlflow: Mlflow) -> None:
    run = await logged_run(mlflow)
    run_id = run["info"]["run_id"]
    created = await mlflow.ok(
        "POST",
        "registered-models/create",
        {"name": "iris", "description": "flowers", "tags": [{"key": "team", "value": "ml"}]},
    )
    assert created["registered_model"]["name"] == "iris"
    assert created["registered_model"]["tags"] == [{"key": "team", "value": "ml"}]
    again = await mlflow.post("registered-models/create", {"name": "iris"})
    assert_error(again, 400, "RESOURCE_ALREADY_EXISTS")

    source = f"{run['info']['artifact_uri']}/model"
    response = await register(mlflow, "iris", source, run_id)
    assert response.status_code == 200, response.text
    version = response.json()["model_version"]
    assert version["name"] == "iris"
    assert version["version"] == "1"
    assert version["source"] == source
    assert version["run_id"] == run_id
    assert version["status"] == "READY"
    assert version["current_stage"] == "None"
    # runs:/ names the same model.
    second = await register(mlflow, "iris", f"runs:/{run_id}/model", "")
    assert second.status_code == 200, second.text
    assert second.json()["model_version"]["version"] == "2"

    # Armillary's registry holds the version with the run's metrics, params and lineage.
    held = await armillary(mlflow, "iris/versions/1")
    assert held.status_code == 200, held.text
    record = held.json()
    assert record["format"] == "skops"
    assert record["source"] == "mlflow"
    assert record["metrics"] == {"accuracy": pytest.approx(0.97)}  # val/loss: not a registry name
    assert record["params"] == {"C": "1.0", "max_iter": "500"}
    assert record["lineage"]["run_id"] == run_id
    assert record["lineage"]["experiment_id"] == run["info"]["experiment_id"]
    assert record["lineage"]["run_name"] == "iris-lr"
    assert record["problem"] == "classification"
    assert [f["name"] for f in record["signature"]["inputs"]] == IRIS_COLUMNS
    assert record["signature"]["inputs"][0]["dtype"] == "Float64"
    assert set(record["artifacts"]) == {"model.skops"}

    # Aliases are the registry's, with their history.
    await mlflow.ok(
        "POST", "registered-models/alias", {"name": "iris", "alias": "champion", "version": "1"}
    )
    await mlflow.ok(
        "POST", "registered-models/alias", {"name": "iris", "alias": "champion", "version": "2"}
    )
    by_alias = await mlflow.ok(
        "GET", "registered-models/alias", {"name": "iris", "alias": "champion"}
    )
    assert by_alias["model_version"]["version"] == "2"
    assert by_alias["model_version"]["aliases"] == ["champion"]
    history = await armillary(mlflow, "iris/aliases/champion/history")
    assert history.status_code == 200, history.text
    moves = [(m["from_version"], m["to_version"]) for m in history.json()["items"]]
    assert sorted(moves, key=str) == sorted([(None, 1), (1, 2)], key=str)

    got = await mlflow.ok("GET", "registered-models/get", {"name": "iris"})
    model = got["registered_model"]
    assert model["aliases"] == [{"alias": "champion", "version": "2"}]
    assert [v["version"] for v in model["latest_versions"]] == ["2"]
    assert model["description"] == "flowers"
    got_version = await mlflow.ok("GET", "model-versions/get", {"name": "iris", "version": "2"})
    assert got_version["model_version"]["aliases"] == ["champion"]
    latest = await mlflow.ok("POST", "registered-models/get-latest-versions", {"name": "iris"})
    assert [v["version"] for v in latest["model_versions"]] == ["2"]

    uri = await mlflow.ok(
        "GET", "model-versions/get-download-uri", {"name": "iris", "version": "1"}
    )
    assert uri["artifact_uri"] == source

    # Searches, in MLflow's grammar.
    await mlflow.ok("POST", "registered-models/create", {"name": "other"})
    found = await mlflow.ok("GET", "registered-models/search", {"filter": "name LIKE 'ir%'"})
    assert [m["name"] for m in found["registered_models"]] == ["iris"]
    # MLflow 3's client adds this clause to exclude prompts: a model without the tag passes.
    not_prompts = "name = 'iris' AND tags.`mlflow.prompt.is_prompt` != 'true'"
    found = await mlflow.ok("GET", "registered-models/search", {"filter": not_prompts})
    assert [m["name"] for m in found["registered_models"]] == ["iris"]
    tagged = await mlflow.ok("GET", "registered-models/search", {"filter": "tags.team = 'ml'"})
    assert [m["name"] for m in tagged["registered_models"]] == ["iris"]
    everything = await mlflow.ok("GET", "registered-models/search", {"max_results": 1})
    assert [m["name"] for m in everything["registered_models"]] == ["iris"]
    following = await mlflow.ok(
        "GET",
        "registered-models/search",
        {"max_results": 1, "page_token": everything["next_page_token"]},
    )
    assert [m["name"] for m in following["registered_models"]] == ["other"]
    versions = await mlflow.ok("GET", "model-versions/search", {"filter": "name='iris'"})
    assert [v["version"] for v in versions["model_versions"]] == ["2", "1"]
    by_run = await mlflow.ok(
        "GET",
        "model-versions/search",
        {"filter": f"run_id = '{run_id}' AND version_number < 2"},
    )
    assert [(v["name"], v["version"]) for v in by_run["model_versions"]] == [("iris", "1")]
    bad = await mlflow.get("model-versions/search", {"filter": "metrics.x > 1"})
    assert_error(bad, 400, "INVALID_PARAMETER_VALUE")

    # Updates, alias deletion, model deletion.
    await mlflow.client.patch(
        mlflow.url("model-versions/update"),
        json={"name": "iris", "version": "1", "description": "first"},
        headers=auth(mlflow.token),
    )
    assert (await armillary(mlflow, "iris/versions/1")).json()["description"] == "first"
    updated = await mlflow.client.patch(
        mlflow.url("registered-models/update"),
        json={"name": "iris", "description": "irises"},
        headers=auth(mlflow.token),
    )
    assert updated.json()["registered_model"]["description"] == "irises"
    deleted = await mlflow.client.request(
        "DELETE",
        mlflow.url("registered-models/alias"),
        json={"name": "iris", "alias": "champion"},
        headers=auth(mlflow.token),
    )
    assert deleted.status_code == 200, deleted.text
    gone = await mlflow.get("registered-models/alias", {"name": "iris", "alias": "champion"})
    assert_error(gone, 404, "RESOURCE_DOES_NOT_EXIST")
    removed = await mlflow.client.request(
        "DELETE",
        mlflow.url("registered-models/delete"),
        json={"name": "other"},
        headers=auth(mlflow.token),
    )
    assert removed.status_code == 200, removed.text
    assert_error(
        await mlflow.get("registered-models/get", {"name": "other"}), 404, "RESOURCE_DOES_NOT_EXIST"
    )


async def test_an_onnx_model_is_registered_as_onnx(mlflow: Mlflow) -> None:
    run = await logged_run(mlflow, "onnx", onnx_bytes(), "model.onnx")
    await mlflow.ok("POST", "registered-models/create", {"name": "iris-onnx"})
    response = await register(
        mlflow, "iris-onnx", f"runs:/{run['info']['run_id']}/model", run["info"]["run_id"]
    )
    assert response.status_code == 200, response.text
    record = (await armillary(mlflow, "iris-onnx/versions/1")).json()
    assert record["format"] == "onnx"
    assert set(record["artifacts"]) == {"model.onnx"}
    assert record["onnx"]["status"] == "ready"


@pytest.mark.parametrize(
    ("flavour", "file"), [("cloudpickle", "model.pkl"), ("pyfunc", "python_model.pkl")]
)
async def test_a_pickle_flavour_is_refused_and_never_loaded(
    mlflow: Mlflow, tmp_path: Path, flavour: str, file: str
) -> None:
    marker = tmp_path / "unpickled"
    run = await logged_run(mlflow, flavour, marker_pickle(marker), file)
    await mlflow.ok("POST", "registered-models/create", {"name": "unsafe"})
    response = await register(mlflow, "unsafe", f"runs:/{run['info']['run_id']}/model", "")
    assert_error(response, 400, "INVALID_PARAMETER_VALUE")
    message = response.json()["message"]
    assert "ONNX" in message
    assert "skops" in message
    assert not marker.exists()
    versions = (await armillary(mlflow, "unsafe/versions")).json()
    assert versions["items"] == []


async def test_a_pickle_disguised_as_skops_is_refused_by_the_registry(
    mlflow: Mlflow, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    run = await logged_run(mlflow, "skops", marker_pickle(marker), "model.skops")
    await mlflow.ok("POST", "registered-models/create", {"name": "disguised"})
    response = await register(mlflow, "disguised", f"runs:/{run['info']['run_id']}/model", "")
    assert_error(response, 400, "INVALID_PARAMETER_VALUE")
    assert not marker.exists()
    assert (await armillary(mlflow, "disguised/versions")).json()["items"] == []


async def test_sources_outside_a_runs_model_are_refused(mlflow: Mlflow) -> None:
    run = await logged_run(mlflow)
    run_id, experiment = run["info"]["run_id"], run["info"]["experiment_id"]
    await mlflow.ok("POST", "registered-models/create", {"name": "iris"})
    for source, status, code in [
        ("s3://bucket/model", 400, "INVALID_PARAMETER_VALUE"),
        (f"runs:/{run_id}/../other/model", 400, "INVALID_PARAMETER_VALUE"),
        (f"runs:/{run_id}/nothing-here", 400, "INVALID_PARAMETER_VALUE"),
        (f"runs:/{'0' * 32}/model", 404, "RESOURCE_DOES_NOT_EXIST"),
        (f"mlflow-artifacts:/{'0' * 32}/{run_id}/artifacts/model", 404, "RESOURCE_DOES_NOT_EXIST"),
        (
            f"mlflow-artifacts:/{experiment}/{run_id}/artifacts/%2e%2e/model",
            400,
            "INVALID_PARAMETER_VALUE",
        ),
    ]:
        assert_error(await register(mlflow, "iris", source, ""), status, code)
    other_run = await mlflow.run(experiment)
    mismatch = await register(mlflow, "iris", f"runs:/{run_id}/model", other_run["info"]["run_id"])
    assert_error(mismatch, 400, "INVALID_PARAMETER_VALUE")
    missing_model = await register(mlflow, "nobody", f"runs:/{run_id}/model", run_id)
    assert_error(missing_model, 404, "RESOURCE_DOES_NOT_EXIST")


async def test_malformed_registry_requests_are_mlflows_errors(mlflow: Mlflow) -> None:
    await mlflow.ok("POST", "registered-models/create", {"name": "iris"})
    for response in (
        await mlflow.post(
            "registered-models/alias", {"name": "iris", "alias": "champion", "version": "one"}
        ),
        await mlflow.post(
            "registered-models/alias", {"name": "iris", "alias": "Champion!", "version": "1"}
        ),
        await mlflow.get("model-versions/get", {"name": "iris", "version": "0"}),
        await mlflow.client.request(
            "DELETE", mlflow.url("registered-models/alias"), headers=auth(mlflow.token)
        ),
        await mlflow.post("registered-models/create", {"name": "bad name/with slash"}),
        await mlflow.get("registered-models/search", {"filter": "name = 'iris' OR name = 'x'"}),
        await mlflow.get("registered-models/search", {"order_by": "tags.team"}),
        await mlflow.get("registered-models/search", {"max_results": 5000}),
    ):
        assert_error(response, 400, "INVALID_PARAMETER_VALUE")
    assert_error(
        await mlflow.get("model-versions/get", {"name": "iris", "version": "7"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert_error(
        await mlflow.post(
            "registered-models/alias", {"name": "iris", "alias": "champion", "version": "7"}
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


@pytest.mark.parametrize("backend_settings", ["postgresql"], indirect=True)
async def test_another_projects_token_finds_no_model(mlflow: Mlflow, platform_api: Api) -> None:
    run = await logged_run(mlflow)
    run_id = run["info"]["run_id"]
    await mlflow.ok("POST", "registered-models/create", {"name": "iris"})
    assert (await register(mlflow, "iris", f"runs:/{run_id}/model", run_id)).status_code == 200
    await mlflow.ok(
        "POST", "registered-models/alias", {"name": "iris", "alias": "champion", "version": "1"}
    )
    other_token, other_project = await editor_in_new_project(platform_api)
    outsider = mlflow.as_user(other_token)
    own = Mlflow(mlflow.client, other_project, other_token)
    for caller in (outsider, own):
        for response in (
            await caller.get("registered-models/get", {"name": "iris"}),
            await caller.get("model-versions/get", {"name": "iris", "version": "1"}),
            await caller.get("registered-models/alias", {"name": "iris", "alias": "champion"}),
            await caller.get("model-versions/get-download-uri", {"name": "iris", "version": "1"}),
            await caller.post(
                "registered-models/alias", {"name": "iris", "alias": "x", "version": "1"}
            ),
        ):
            assert_error(response, 404, "RESOURCE_DOES_NOT_EXIST")
    # Their own model cannot take this project's run either.
    await own.ok("POST", "registered-models/create", {"name": "iris"})
    stolen = await register(own, "iris", f"runs:/{run_id}/model", "")
    assert_error(stolen, 404, "RESOURCE_DOES_NOT_EXIST")
    searched = await own.ok("GET", "model-versions/search", {"filter": "name='iris'"})
    assert searched["model_versions"] == []
