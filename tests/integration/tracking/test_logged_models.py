"""MLflow 3's logged models, kept as a directory of their run's artifacts: what its
``log_model`` calls, and the run's points it re-logs linked to the model, kept once."""

from __future__ import annotations

from tests.conftest import Api
from tests.integration.tracking.support import Mlflow, assert_error, editor_in_new_project


async def test_a_logged_model_lives_in_its_runs_artifacts(mlflow: Mlflow) -> None:
    experiment = await mlflow.experiment("lm")
    run = await mlflow.run(experiment)
    run_id = run["info"]["run_id"]
    created = await mlflow.ok(
        "POST",
        "logged-models",
        {"experiment_id": experiment, "name": "model", "source_run_id": run_id},
    )
    info = created["model"]["info"]
    assert info["model_id"] == f"m-{run_id}-model"
    assert info["artifact_uri"] == f"{run['info']['artifact_uri']}/model"
    assert info["source_run_id"] == run_id
    assert info["experiment_id"] == experiment
    got = await mlflow.ok("GET", f"logged-models/{info['model_id']}", {})
    assert got["model"]["info"]["artifact_uri"] == info["artifact_uri"]
    finalized = await mlflow.client.patch(
        mlflow.url(f"logged-models/{info['model_id']}"),
        json={"model_id": info["model_id"], "status": "LOGGED_MODEL_READY"},
        headers={"authorization": f"Bearer {mlflow.token}"},
    )
    assert finalized.status_code == 200, finalized.text
    outputs = {"run_id": run_id, "models": [{"model_id": info["model_id"], "step": 0}]}
    await mlflow.ok("POST", "runs/outputs", outputs)

    # log_model re-logs the run's points at the model's step, linked to it: kept once.
    point = {"key": "acc", "value": 0.9, "timestamp": 5, "step": 0}
    await mlflow.ok("POST", "runs/log-batch", {"run_id": run_id, "metrics": [point]})
    linked = {**point, "model_id": info["model_id"]}
    fresh = {**point, "value": 0.95, "model_id": info["model_id"]}
    await mlflow.ok("POST", "runs/log-batch", {"run_id": run_id, "metrics": [linked, fresh]})
    history = await mlflow.ok("GET", "metrics/get-history", {"run_id": run_id, "metric_key": "acc"})
    assert [m["value"] for m in history["metrics"]] == [0.9, 0.95]
    # Points without a model id are kept as logged, duplicates included (as before).
    await mlflow.ok("POST", "runs/log-batch", {"run_id": run_id, "metrics": [point]})
    history = await mlflow.ok("GET", "metrics/get-history", {"run_id": run_id, "metric_key": "acc"})
    assert [m["value"] for m in history["metrics"]] == [0.9, 0.95, 0.9]


async def test_a_logged_model_needs_a_run_and_a_plain_name(mlflow: Mlflow) -> None:
    experiment = await mlflow.experiment("lm")
    run_id = (await mlflow.run(experiment))["info"]["run_id"]
    for body in (
        {"experiment_id": experiment, "name": "model"},
        {"experiment_id": experiment, "name": "../model", "source_run_id": run_id},
        {"experiment_id": experiment, "name": "a/b", "source_run_id": run_id},
    ):
        assert_error(await mlflow.post("logged-models", body), 400, "INVALID_PARAMETER_VALUE")
    for model_id in ("m-123", f"m-{'0' * 32}-model", "model"):
        found = await mlflow.get(f"logged-models/{model_id}", {})
        assert_error(found, 404, "RESOURCE_DOES_NOT_EXIST")
    dotted = await mlflow.get(f"logged-models/m-{run_id}-..", {})
    assert_error(dotted, 400, "INVALID_PARAMETER_VALUE")


async def test_another_projects_logged_model_is_not_found(
    mlflow: Mlflow, platform_api: Api
) -> None:
    experiment = await mlflow.experiment("lm")
    run_id = (await mlflow.run(experiment))["info"]["run_id"]
    other_token, other_project = await editor_in_new_project(platform_api)
    own = Mlflow(mlflow.client, other_project, other_token)
    assert_error(
        await own.get(f"logged-models/m-{run_id}-model", {}), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    assert_error(
        await own.post("logged-models", {"name": "model", "source_run_id": run_id}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert_error(
        await own.post("runs/outputs", {"run_id": run_id, "models": []}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
