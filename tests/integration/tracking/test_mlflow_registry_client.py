"""MLflow's real client logs a scikit-learn model (``mlflow.sklearn.log_model`` in skops) and
registers it with Armillary served on a loopback port: Armillary's registry then holds the
version with the run's metrics, a deployment of its alias answers predictions, and a pickled
model is refused unread."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import auth
from tests.integration.sdk.test_sdk_datasets import serve
from tests.integration.tracking.mlflow_peer import NO_TELEMETRY
from tests.integration.tracking.test_mlflow_client import _user_and_project, peer_python

from armillary.app import create_app
from armillary.kit.settings import Settings

SCRIPT = Path(__file__).with_name("mlflow_registry_script.py")
__all__ = ["peer_python"]  # the module's fixture, shared


def _run_script(peer: Path, base: str, project: str, token: str, tmp_path: Path) -> Any:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": f"{base}/mlflow/{project}",
        "MLFLOW_TRACKING_TOKEN": token,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        **NO_TELEMETRY,
    }
    done = subprocess.run(
        [str(peer), str(SCRIPT), str(tmp_path / "unpickled")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_mlflow_client_registers_a_servable_model(
    peer_python: Path, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    app = create_app(settings_factory(), configure_logs=False)
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        token, project = _user_and_project(http)
        seen = _run_script(peer_python, base, project, token, tmp_path)
        api = f"/mlflow/{project}/api/2.0/mlflow"

        def get(path: str, **params: Any) -> Any:
            response = http.get(path, params=params, headers=auth(token))
            assert response.status_code == 200, response.text
            return response.json()

        # Autolog without models: the estimator's params and its training metrics.
        autolog = get(f"{api}/runs/get", run_id=seen["autolog"]["run_id"])["run"]["data"]
        params = {p["key"]: p["value"] for p in autolog["params"]}
        assert params["C"] == "0.5"
        assert params["max_iter"] == "400"
        assert "training_accuracy_score" in {m["key"] for m in autolog["metrics"]}

        # What MLflow's client read back.
        registered = seen["registered"]
        run_id = registered["run_id"]
        assert registered["version"] == "1"
        assert registered["version_run_id"] == run_id
        assert registered["by_alias"] == ["1", run_id, ["champion"]]
        assert registered["registered"] == ["iris"]
        assert registered["aliases"] == {"champion": "1"}
        assert registered["versions"] == [["iris", "1"]]
        assert registered["download_uri"].endswith(f"/{run_id}/artifacts/model")

        # Armillary's registry: the version, with the run's metrics, params and lineage.
        models = f"/api/v1/projects/{project}/models"
        version = get(f"{models}/iris/versions/1")
        assert version["format"] == "skops"
        assert version["metrics"]["accuracy"] == pytest.approx(registered["accuracy"])
        assert version["params"] == {"C": "1.0", "max_iter": "500"}
        assert version["lineage"]["run_id"] == run_id
        assert get(f"{models}/iris/aliases/champion")["version"] == 1
        # log_model re-logged the run's accuracy linked to the logged model: kept once.
        history = get(f"{api}/metrics/get-history", run_id=run_id, metric_key="accuracy")
        assert len(history["metrics"]) == 1

        # Deployed by its alias, it answers.
        deployments = f"/api/v1/projects/{project}/deployments"
        created = http.post(
            deployments,
            json={
                "name": "iris-api",
                "routing": {"mode": "random"},
                "variants": [{"model": "iris", "name": "main", "alias": "champion", "weight": 1}],
            },
            headers=auth(token),
        )
        assert created.status_code == 201, created.text
        key = http.post(f"{deployments}/iris-api/keys", json={"name": "app"}, headers=auth(token))
        assert key.status_code == 201, key.text
        answer = http.post(
            f"{deployments}/iris-api/predict",
            json={"instances": registered["sample"]},
            headers={"X-API-Key": key.json()["key"]},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == registered["expected"]
        assert answer.json()["model_version"] == 1

        # The pickled model: refused with MLflow's error naming the safe flavours, never read.
        refused = seen["refused"]
        assert refused["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "ONNX" in refused["message"]
        assert "skops" in refused["message"]
        assert not (tmp_path / "unpickled").exists()
        assert get(f"{models}/pickled/versions")["items"] == []
